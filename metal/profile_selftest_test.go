package metal

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSelfTestsAreNotProfiled: the ops a self-test runs (its CPU reference and
// its launches) stay out of the profile; the op that triggered it is counted.
func TestSelfTestsAreNotProfiled(t *testing.T) {
	ResetProfile()
	defer ResetProfile()
	r := &Registry{ops: map[string]*Op{}}
	op := r.Register("profiled_selftest", []string{"N"},
		&Impl{Path: PathMetal, Available: func() bool { return true }, SelfTest: func() error {
			RecordOp("matmul", PathAsm, 1, 1) // the reference's GEMM
			return nil
		}},
		&Impl{Path: PathGo})
	assert.True(t, op.OnMetal(1))
	RecordOp("profiled_selftest", PathMetal, 1, 1)
	var ops []string
	for _, e := range ProfileSnapshot() {
		ops = append(ops, e.Op+" "+e.Path.String())
	}
	assert.Equal(t, []string{"profiled_selftest metal"}, ops)
}
