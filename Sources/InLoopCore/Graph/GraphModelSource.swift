extension GraphModel {
    /// The graph this model was compiled from (with its constants): for conversions and for
    /// differentiable copies of the model.
    public var sourceGraph: Graph { graph }
}
