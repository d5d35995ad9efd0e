package main

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/recipes"
)

// loadModel reads a checkpoint (or a run directory's latest) for generate and
// eval: a full or fused checkpoint as it is, a LoRA checkpoint as its base
// model with the adapters attached.
func loadModel(path string) (*loadedModel, error) {
	lm, err := recipes.LoadModel(path)
	if err != nil {
		return nil, fmt.Errorf("--checkpoint: %w", err)
	}
	return &loadedModel{dir: lm.Dir, model: lm.Model, tok: lm.Tokenizer}, nil
}
