//! What the stages before the sink do to records, as the sink is told when it is
//! built (like Vector's `input()`, turned round: the pipeline build works it out from
//! the built transforms, so no stage asks another).

/// What reaches the sink, worked out by [`crate::pipeline::build()`].
///
/// The default says nothing is known: no template renders ids or chooses the index,
/// the fingerprint is 0, and whether a body was rendered is left to each record (for
/// a sink built on its own, as `alias rollback` does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upstream {
    /// Whether a template stage renders the documents' bodies (a template with only
    /// `id` or `index` keeps the default document, and its built-in mapping); `None`
    /// when not known, and then each record says (a rendered document or none).
    pub bodies_rendered: Option<bool>,
    /// Whether a template stage renders the documents' ids (`id:`); without one, a
    /// document's id is the default one, computed from its key.
    pub ids_rendered: bool,
    /// Whether the last template stage chooses every document's index (`index:`): the
    /// sink's own fixed index is then never written to, so never created nor cleaned.
    pub routed: bool,
    /// The pipeline fingerprint ([`crate::config::fingerprint::pipeline_fingerprint`]),
    /// seed of every document's content hash.
    pub fingerprint: u64,
}
