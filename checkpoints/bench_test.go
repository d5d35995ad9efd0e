package checkpoints

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// benchModel is about 64 MiB of float32 in 32 tensors, the size of a small model.
func benchModel() (map[string]*autodiff.Tensor, int64) {
	m := map[string]*autodiff.Tensor{}
	var n int64
	for i := range 32 {
		t := filled(autodiff.Float32, 512, 1024)
		m[fmt.Sprintf("layers.%d.weight", i)] = t
		n += int64(len(t.Bytes()))
	}
	return m, n
}

func BenchmarkSave(b *testing.B) {
	m, n := benchModel()
	path := filepath.Join(b.TempDir(), "m.safetensors")
	b.SetBytes(n)
	for b.Loop() {
		if err := Save(path, m, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	m, n := benchModel()
	path := filepath.Join(b.TempDir(), "m.safetensors")
	if err := Save(path, m, nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n)
	for b.Loop() {
		f, err := Load(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Release()
	}
}

func BenchmarkSaveDir(b *testing.B) {
	m, n := benchModel()
	opt, _ := benchModel()
	parent := b.TempDir()
	b.SetBytes(2 * n)
	step := int64(0)
	for b.Loop() {
		step++
		if _, err := SaveDir(parent, step, &Checkpoint{Model: m, Optimizer: opt}); err != nil {
			b.Fatal(err)
		}
		if _, err := Retain(parent, 1); err != nil {
			b.Fatal(err)
		}
	}
}
