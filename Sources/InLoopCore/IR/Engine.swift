/// The one engine (issue 10, `docs/ENGINE.md`): a graph IR with symbolic shapes, one op table, one
/// compiler and one executor for inference, training and derivatives, in float32 and float64.
///
/// While the four engines it replaces still exist, its types live in this namespace (`Engine.Graph`,
/// `Engine.Tensor`, ...); the last migration step (5.3) moves them to the top level.
public enum Engine {}
