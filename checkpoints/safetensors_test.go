package checkpoints

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// stFile assembles a safetensors file from a header and a data region by hand,
// independent of the writer.
func stFile(header string, data ...byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func readBytes(t *testing.T, b []byte) (*File, error) {
	t.Helper()
	return Read(bytes.NewReader(b), int64(len(b)))
}

func TestReadsAHandBuiltFile(t *testing.T) {
	// Keys in no particular order, metadata between tensors, an empty tensor, a
	// field order different from the writer's, and trailing space padding: all
	// allowed by the format.
	header := `{"b":{"dtype":"F16","shape":[3],"data_offsets":[8,14]}, "__metadata__":{"format":"pt","note":"<&>"},` +
		` "a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"shape":[0,4],"dtype":"I32","data_offsets":[14,14]},` +
		`"s":{"data_offsets":[14,22],"dtype":"F64","shape":[]}}   `
	data := []byte{
		0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, // a: 1, -2 (float32)
		0x00, 0x3c, 0x00, 0x80, 0xff, 0x7b, // b: 1, -0, 65504 (float16)
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0xbf, // s: -1 (float64)
	}
	f, err := readBytes(t, stFile(header, data...))
	require.NoError(t, err)
	defer f.Release()

	assert.Equal(t, []string{"a", "b", "e", "s"}, f.Names())
	assert.Equal(t, map[string]string{"format": "pt", "note": "<&>"}, f.Metadata)

	a, err := f.Get("a")
	require.NoError(t, err)
	assert.Equal(t, autodiff.Float32, a.DType())
	assert.Equal(t, []int{2}, a.Shape())
	assert.Equal(t, []float32{1, -2}, a.Float32s())

	b := f.Tensors["b"]
	assert.Equal(t, autodiff.Float16, b.DType())
	assert.Equal(t, []uint16{0x3c00, 0x8000, 0x7bff}, b.Halves())

	e := f.Tensors["e"]
	assert.Equal(t, autodiff.Int32, e.DType())
	assert.Equal(t, []int{0, 4}, e.Shape())
	assert.Equal(t, 0, e.Len())

	s := f.Tensors["s"]
	assert.Equal(t, 0, s.Rank())
	assert.Equal(t, []float64{-1}, s.Float64s())

	_, err = f.Get("missing")
	assert.ErrorContains(t, err, `no tensor "missing"`)
}

func TestWriteMatchesHandBuiltBytes(t *testing.T) {
	w := autodiff.FromFloat32([]float32{1.5, float32(math.Copysign(0, -1))}, 2)
	h := autodiff.Empty(autodiff.BFloat16, 1, 1)
	h.Halves()[0] = 0x3f80 // 1.0
	i := autodiff.FromInt32([]int32{-1})
	var got bytes.Buffer
	require.NoError(t, Write(&got, map[string]*autodiff.Tensor{"w": w, "h": h, "i": i}, map[string]string{"format": "pt"}))

	// Header keys sorted; data by element size (4-byte I32 and F32, by name, then
	// 2-byte BF16); header padded with 4 spaces to 200 bytes, a multiple of 8.
	want := []byte{0xc8, 0, 0, 0, 0, 0, 0, 0}
	want = append(want, `{"__metadata__":{"format":"pt"},`+
		`"h":{"dtype":"BF16","shape":[1,1],"data_offsets":[12,14]},`+
		`"i":{"dtype":"I32","shape":[],"data_offsets":[0,4]},`+
		`"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}    `...)
	want = append(want,
		0xff, 0xff, 0xff, 0xff, // i: -1
		0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0x80, // w: 1.5, -0
		0x80, 0x3f, // h: 1.0
	)
	assert.Equal(t, want, got.Bytes())
}

func TestWriteWithoutMetadataOrTensors(t *testing.T) {
	var got bytes.Buffer
	require.NoError(t, Write(&got, nil, nil))
	assert.Equal(t, append([]byte{8, 0, 0, 0, 0, 0, 0, 0}, "{}      "...), got.Bytes())
	f, err := readBytes(t, got.Bytes())
	require.NoError(t, err)
	assert.Empty(t, f.Tensors)
	assert.Empty(t, f.Metadata)
}

func TestWriteIsDeterministicAndAligned(t *testing.T) {
	tensors := map[string]*autodiff.Tensor{}
	for i, d := range []autodiff.DType{autodiff.Float16, autodiff.Float64, autodiff.Int32, autodiff.BFloat16, autodiff.Float32, autodiff.Uint32} {
		for j := range 5 {
			tensors[string(rune('a'+j))+d.String()] = autodiff.Zeros(d, 2*i+j+1)
		}
	}
	var first bytes.Buffer
	require.NoError(t, Write(&first, tensors, map[string]string{"z": "1", "a": "2"}))
	for range 5 {
		var again bytes.Buffer
		require.NoError(t, Write(&again, tensors, map[string]string{"a": "2", "z": "1"}))
		require.Equal(t, first.Bytes(), again.Bytes())
	}
	n := binary.LittleEndian.Uint64(first.Bytes())
	assert.Zero(t, (8+n)%8, "data region starts 8-byte aligned")
	entries, _, err := parseHeader(first.Bytes()[8:8+n], uint64(first.Len())-8-n)
	require.NoError(t, err)
	for _, e := range entries {
		assert.Zero(t, e.begin%uint64(e.dtype.Size()), "%s starts at %d", e.name, e.begin)
	}
}

// special holds awkward bit patterns of each width.
var (
	special32 = []uint32{0x7fc00001, 0xffa00000, 0x7f800001, 0x80000000, 0x00000001, 0x807fffff, 0x7f800000, 0xff800000, 0x3f800000}
	special64 = []uint64{0x7ff8000000000123, 0xfff0000000000001, 0x8000000000000000, 0x0000000000000001, 0x800fffffffffffff, 0x7ff0000000000000, 0x3ff0000000000000}
	special16 = []uint16{0x7c01, 0xfe01, 0x8000, 0x0001, 0x83ff, 0x7c00, 0xfc00, 0x7fc1, 0xff81, 0x0080}
)

// filled returns a tensor of n elements of dtype cycling through the special
// patterns and then counting, as raw bits.
func filled(d autodiff.DType, shape ...int) *autodiff.Tensor {
	t := autodiff.Empty(d, shape...)
	b := t.Bytes()
	for i := range t.Len() {
		switch d.Size() {
		case 2:
			v := uint16(i*7919 + 3)
			if i < len(special16) {
				v = special16[i]
			}
			binary.LittleEndian.PutUint16(b[2*i:], v)
		case 4:
			v := uint32(i)*2654435761 + 1
			if i < len(special32) {
				v = special32[i]
			}
			binary.LittleEndian.PutUint32(b[4*i:], v)
		case 8:
			v := uint64(i)*0x9e3779b97f4a7c15 + 1
			if i < len(special64) {
				v = special64[i]
			}
			binary.LittleEndian.PutUint64(b[8*i:], v)
		}
	}
	return t
}

func TestRoundTripIsBitExact(t *testing.T) {
	dtypes := []autodiff.DType{autodiff.Float32, autodiff.Float64, autodiff.Float16, autodiff.BFloat16, autodiff.Int32, autodiff.Uint32}
	shapes := [][]int{{}, {1}, {7}, {33}, {127}, {3, 0, 5}, {0}, {2, 3, 4}, {1, 127}}
	tensors := map[string]*autodiff.Tensor{}
	for _, d := range dtypes {
		for _, s := range shapes {
			tensors[fmt.Sprintf("%s/%v", d, s)] = filled(d, s...)
		}
	}
	path := filepath.Join(t.TempDir(), "all.safetensors")
	require.NoError(t, Save(path, tensors, map[string]string{"unicode": "héllo ✓", "quote": `"\`}))
	f, err := Load(path)
	require.NoError(t, err)
	defer f.Release()
	assert.Equal(t, map[string]string{"unicode": "héllo ✓", "quote": `"\`}, f.Metadata)
	require.Len(t, f.Tensors, len(tensors))
	for name, want := range tensors {
		got := f.Tensors[name]
		require.NotNil(t, got, name)
		assert.Equal(t, want.DType(), got.DType(), name)
		assert.Equal(t, want.Shape(), got.Shape(), name)
		assert.True(t, bytes.Equal(want.Bytes(), got.Bytes()), "%s: bytes differ", name)
	}
	// The special patterns really are what the name says once read back.
	f32 := f.Tensors["float32/[7]"].Float32s()
	assert.Equal(t, uint32(0x7fc00001), math.Float32bits(f32[0]), "NaN payload kept")
	assert.True(t, math.Signbit(float64(f32[3])) && f32[3] == 0, "-0 kept")
	assert.Equal(t, float32(math.SmallestNonzeroFloat32), f32[4], "subnormal kept")
	f64 := f.Tensors["float64/[7]"].Float64s()
	assert.Equal(t, uint64(0x7ff8000000000123), math.Float64bits(f64[0]))
	assert.Equal(t, []uint16{0x7c01, 0xfe01, 0x8000, 0x0001}, f.Tensors["float16/[33]"].Halves()[:4])
	assert.Equal(t, []uint16{0x7c01, 0xfe01, 0x8000, 0x0001}, f.Tensors["bfloat16/[33]"].Halves()[:4])

	// Saving what was loaded gives the same file, byte for byte.
	again := filepath.Join(t.TempDir(), "again.safetensors")
	require.NoError(t, Save(again, f.Tensors, f.Metadata))
	b1, err := os.ReadFile(path)
	require.NoError(t, err)
	b2, err := os.ReadFile(again)
	require.NoError(t, err)
	assert.Equal(t, b1, b2)
}

func TestSaveReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	require.NoError(t, Save(path, map[string]*autodiff.Tensor{"x": autodiff.FromFloat32([]float32{1}, 1)}, nil))
	// A failing save (a released tensor) leaves the old file and no temporary one.
	gone := autodiff.FromFloat32([]float32{2}, 1)
	gone.Release()
	err := Save(path, map[string]*autodiff.Tensor{"x": gone}, nil)
	require.ErrorContains(t, err, `tensor "x" has been released`)
	assert.ErrorContains(t, err, path)
	f, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, []float32{1}, f.Tensors["x"].Float32s())
	f.Release()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, ents, 1)
}

func TestWriteRefusesBadInput(t *testing.T) {
	released := autodiff.Zeros(autodiff.Float32, 1)
	released.Release()
	for _, tc := range []struct {
		name    string
		tensors map[string]*autodiff.Tensor
		meta    map[string]string
		want    string
	}{
		{"empty name", map[string]*autodiff.Tensor{"": autodiff.Zeros(autodiff.Float32, 1)}, nil, "empty tensor name"},
		{"reserved", map[string]*autodiff.Tensor{"__metadata__": autodiff.Zeros(autodiff.Float32, 1)}, nil, "reserved"},
		{"nil", map[string]*autodiff.Tensor{"x": nil}, nil, `tensor "x" is nil`},
		{"released", map[string]*autodiff.Tensor{"x": released}, nil, `tensor "x" has been released`},
		{"bad utf8 name", map[string]*autodiff.Tensor{"\xff": autodiff.Zeros(autodiff.Float32, 1)}, nil, "not valid UTF-8"},
		{"bad utf8 meta", nil, map[string]string{"k": "\xff"}, "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tc.tensors, tc.meta)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestReadRejectsCorruptFiles(t *testing.T) {
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	eight := make([]byte, 8)
	long := func(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "too short"},
		{"short length", []byte{1, 2, 3}, "too short"},
		{"header past the file", append(long(1000), `{}`...), "header length 1000 exceeds the file"},
		{"huge header length", append(long(math.MaxUint64), `{}`...), "exceeds the file"},
		{"empty header", stFile(""), "does not start with '{'"},
		{"leading space", stFile(" " + ok), "does not start with '{'"},
		{"not utf8", stFile("{\"\xff\":1}"), "not valid UTF-8"},
		{"invalid json", stFile(`{"a":`), "invalid JSON"},
		{"trailing garbage", stFile(`{} x`), "invalid JSON"},
		{"two objects", stFile(`{}{}`), "data after the object"},
		{"array", stFile(`{]`), "invalid JSON"},
		{"duplicate tensor", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight...), `duplicate key "a"`},
		{"duplicate field", stFile(`{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, eight...), `duplicate key "dtype"`},
		{"entry not object", stFile(`{"a":[1]}`), `tensor "a"`},
		{"unknown dtype", stFile(`{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}`, eight...), `tensor "a": unknown dtype "F33"`},
		{"unsupported dtype", stFile(`{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, eight...), `tensor "a": dtype I64 is not supported`},
		{"dtype not string", stFile(`{"a":{"dtype":1,"shape":[2],"data_offsets":[0,8]}}`, eight...), `tensor "a": dtype 1 is not a string`},
		{"no dtype", stFile(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, eight...), `tensor "a": no dtype`},
		{"null dtype", stFile(`{"a":{"dtype":null,"shape":[2],"data_offsets":[0,8]}}`, eight...), `tensor "a": dtype null`},
		{"no shape", stFile(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, eight...), `tensor "a": no shape`},
		{"null shape", stFile(`{"a":{"dtype":"F32","shape":null,"data_offsets":[0,8]}}`, eight...), `tensor "a": shape: null`},
		{"negative dim", stFile(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, eight...), `tensor "a": shape: -2 is not a non-negative integer`},
		{"fractional dim", stFile(`{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, eight...), `2.0 is not a non-negative integer`},
		{"null dim", stFile(`{"a":{"dtype":"F32","shape":[null],"data_offsets":[0,8]}}`, eight...), `null is not a non-negative integer`},
		{"no offsets", stFile(`{"a":{"dtype":"F32","shape":[2]}}`, eight...), `tensor "a": no data_offsets`},
		{"three offsets", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, eight...), `want [begin, end]`},
		{"one offset", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}}`, eight...), `want [begin, end]`},
		{"unknown field", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"stride":[1]}}`, eight...), `unknown field "stride"`},
		{"backwards offsets", stFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, eight...), `end before they begin`},
		{"size mismatch", stFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, eight...), `tensor "a": data_offsets [0, 8] hold 8 bytes but shape [3] of F32 needs 12`},
		{"shape overflow", stFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}`), `overflows`},
		{"dim too large", stFile(`{"a":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}}`), `too large`},
		{"past the data", stFile(ok, 0, 0, 0, 0), `tensor "a": data_offsets [0, 8] reach past the data region (4 bytes): the file is truncated`},
		{"huge offsets", stFile(`{"a":{"dtype":"U32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}}`), `hold 3 bytes`},
		{"overlap", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight...), `tensor "b": data_offsets [4, 8] overlap tensor "a" [0, 8]`},
		{"same range", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}`, eight...), `tensor "b": data_offsets [0, 8] overlap tensor "a"`},
		{"gap", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight...), `tensor "a": data_offsets [4, 8] leave bytes [0, 4)`},
		{"extra data", stFile(ok, append(eight, 1)...), `bytes [8, 9) of the data region belong to no tensor`},
		{"data without tensors", stFile(`{}`, 1), `bytes [0, 1) of the data region`},
		{"metadata not object", stFile(`{"__metadata__":"x"}`), `__metadata__: "x" is not a JSON object`},
		{"metadata not strings", stFile(`{"__metadata__":{"epoch":3}}`), `__metadata__: key "epoch": value 3 is not a string`},
		{"metadata duplicate", stFile(`{"__metadata__":{"k":"a","k":"b"}}`), `duplicate key "k"`},
		{"metadata twice", stFile(`{"__metadata__":{},"__metadata__":{}}`), `duplicate key "__metadata__"`},
		{"deep nesting", stFile(`{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metal.HostPool.InUse()
			f, err := readBytes(t, tc.file)
			require.Error(t, err)
			assert.Nil(t, f)
			assert.ErrorContains(t, err, tc.want)
			assert.Equal(t, before, metal.HostPool.InUse(), "nothing allocated stays allocated")
		})
	}
}

func TestReadRefusesAHugeHeaderBeforeReadingIt(t *testing.T) {
	// The announced size allows the header, but the limit stops us first.
	b := binary.LittleEndian.AppendUint64(nil, maxHeader+1)
	_, err := Read(bytes.NewReader(b), 2*maxHeader)
	assert.ErrorContains(t, err, "exceeds the limit")
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	require.NoError(t, os.WriteFile(path, stFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 1, 2, 3), 0o644))
	_, err := Load(path)
	assert.ErrorContains(t, err, "safetensors "+path+`: tensor "w"`)
	assert.ErrorContains(t, err, "truncated")

	_, err = Load(filepath.Join(dir, "absent.safetensors"))
	assert.ErrorContains(t, err, "absent.safetensors")
	_, err = Load(dir)
	assert.ErrorContains(t, err, "not a regular file")
}

// TestEveryTruncationIsAnError cuts a valid file at every length: each prefix must
// be refused (the header then disagrees with the size), without a panic.
func TestEveryTruncationIsAnError(t *testing.T) {
	var full bytes.Buffer
	require.NoError(t, Write(&full, map[string]*autodiff.Tensor{
		"a": filled(autodiff.Float32, 3), "b": filled(autodiff.Float16, 5), "c": filled(autodiff.Float64, 2),
	}, map[string]string{"k": "v"}))
	b := full.Bytes()
	for n := range len(b) {
		_, err := readBytes(t, b[:n])
		require.Error(t, err, "prefix of %d bytes", n)
	}
	f, err := readBytes(t, b)
	require.NoError(t, err)
	f.Release()
}

// shortReader gives up after n bytes whatever size the caller announced, as a file
// shrinking under us would.
type shortReader struct {
	r *bytes.Reader
	n int
}

func (s *shortReader) Read(p []byte) (int, error) {
	if s.n <= 0 {
		return 0, os.ErrClosed
	}
	p = p[:min(len(p), s.n)]
	n, err := s.r.Read(p)
	s.n -= n
	return n, err
}

func TestReadFailingMidDataReleasesTensors(t *testing.T) {
	var full bytes.Buffer
	require.NoError(t, Write(&full, map[string]*autodiff.Tensor{"a": filled(autodiff.Float32, 64), "b": filled(autodiff.Float32, 64)}, nil))
	before := metal.HostPool.InUse()
	_, err := Read(&shortReader{bytes.NewReader(full.Bytes()), full.Len() - 10}, int64(full.Len()))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `tensor "b"`)
	assert.Equal(t, before, metal.HostPool.InUse())
}

// FuzzRead feeds arbitrary bytes to the reader: it must never panic, and whatever
// it accepts must be consistent: the tensors fill the data region exactly and
// writing them out reads back the same.
func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	_ = Write(&buf, map[string]*autodiff.Tensor{"a": filled(autodiff.Float32, 3), "b": filled(autodiff.BFloat16, 1, 2), "c": autodiff.Zeros(autodiff.Int32, 0)}, map[string]string{"format": "pt"})
	f.Add(buf.Bytes())
	f.Add(stFile(`{}`))
	f.Add(stFile(`{"a":{"dtype":"U32","shape":[],"data_offsets":[0,4]}}  `, 1, 2, 3, 4))
	f.Add(stFile(`{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[1],"data_offsets":[8,10]}}`, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2))
	f.Add(stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add(stFile(`{"__metadata__":{"x":"y"},"a":{"dtype":"I32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := readBytes(t, b)
		if err != nil {
			return
		}
		defer file.Release()
		n := binary.LittleEndian.Uint64(b)
		total := 0
		for _, ten := range file.Tensors {
			total += len(ten.Bytes())
		}
		if uint64(total) != uint64(len(b))-8-n {
			t.Fatalf("tensors hold %d bytes, data region is %d", total, uint64(len(b))-8-n)
		}
		var out bytes.Buffer
		if err := Write(&out, file.Tensors, file.Metadata); err != nil {
			t.Fatalf("accepted file does not write back: %v", err)
		}
		back, err := readBytes(t, out.Bytes())
		if err != nil {
			t.Fatalf("written file does not read back: %v", err)
		}
		defer back.Release()
		for name, ten := range file.Tensors {
			got := back.Tensors[name]
			if got == nil || got.DType() != ten.DType() || !bytes.Equal(got.Bytes(), ten.Bytes()) {
				t.Fatalf("tensor %q differs after a round trip", name)
			}
		}
	})
}
