// Package checkpoints reads and writes safetensors files and trainer state, saves
// atomically (a temporary directory renamed into place) and resumes exactly.
package checkpoints
