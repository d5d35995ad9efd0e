//go:build (darwin || linux) && (amd64 || arm64)

package gemm

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/ebitengine/purego"
)

// openBLAS opens the first library of names that has cblas_sgemm.
func openBLAS(names []string) (*blasLib, error) {
	var errs []string
	for _, name := range names {
		h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		sym, err := purego.Dlsym(h, "cblas_sgemm")
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: no cblas_sgemm", name))
			_ = purego.Dlclose(h)
			continue
		}
		lib := &blasLib{name: name, split: runtime.GOOS != "darwin"}
		purego.RegisterFunc(&lib.sgemm, sym)
		if s, err := purego.Dlsym(h, "cblas_sgemv"); err == nil {
			purego.RegisterFunc(&lib.sgemv, s)
		}
		if s, err := purego.Dlsym(h, "openblas_set_num_threads"); err == nil {
			purego.RegisterFunc(&lib.setThreads, s)
			lib.split = true
		}
		return lib, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no BLAS library to try on " + runtime.GOOS)
	}
	return nil, errors.New(strings.Join(errs, "; "))
}
