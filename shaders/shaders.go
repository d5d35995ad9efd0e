// Package shaders holds the Metal Shading Language sources of every kernel, embedded
// so the binary compiles them at start. It has no Go logic.
package shaders

import "embed"

// Sources holds every *.metal file of the package.
//
//go:embed *.metal
var Sources embed.FS
