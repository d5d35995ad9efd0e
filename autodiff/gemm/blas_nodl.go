//go:build !((darwin || linux) && (amd64 || arm64))

package gemm

import (
	"errors"
	"runtime"
)

func openBLAS(names []string) (*blasLib, error) {
	return nil, errors.New("no run-time library loading on " + runtime.GOOS + "/" + runtime.GOARCH)
}
