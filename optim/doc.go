// Package optim holds optimizers (SGD, Adam, AdamW, Lion), learning-rate schedules,
// gradient clipping and accumulation. Optimizer state is exposed as named tensors so
// checkpoints save and restore it exactly.
package optim
