//! Reading a database: which databases (`databases`), SCAN walks (`scan`), one
//! database's read loop (`reader`), a page's types, TTLs and sizes (`inspect`), a
//! page's values (`page`), large collections in bounded chunks (`chunked`), and
//! replies turned into typed values (`value`).

pub(super) mod chunked;
pub(super) mod databases;
pub(super) mod inspect;
pub(super) mod page;
pub(super) mod reader;
pub(super) mod scan;
pub(super) mod unreadable;
pub(super) mod value;
