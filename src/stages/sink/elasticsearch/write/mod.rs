//! Writing one run's documents: each record to its index (`routing`), the indices
//! met (`indices`), batching (`writer`), bulk bodies (`encoder`), the run's state
//! (`running`), ids written twice (`repeated`) and the end of a run (`finish`).

pub(super) mod encoder;
pub(super) mod finish;
pub(super) mod indices;
pub(super) mod repeated;
pub(super) mod routing;
pub(super) mod running;
pub(super) mod writer;
