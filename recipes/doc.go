// Package recipes is the training recipe: a Go struct filled from TOML and validated,
// which builds the model, data and optimizer, and runs the fit loop.
package recipes
