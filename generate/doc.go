// Package generate is the decode loop: samplers, batched and speculative generation.
package generate
