// Package models assembles decoder-only language models from blocks, choosing the
// mixer (attention, SSM) and feed-forward (dense, MoE) per layer, with a config.json
// and llama-style parameter names.
package models
