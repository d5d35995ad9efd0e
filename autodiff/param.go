package autodiff

// Param is a named parameter: the names are stable across runs (checkpoints key on
// them) and follow the llama convention where the part exists, e.g.
// "model.layers.0.self_attn.q_proj.weight".
type Param struct {
	Name  string
	Value *Tensor
}
