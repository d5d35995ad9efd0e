package quant

import (
	"fmt"
	"math"
)

// Bits and group sizes MLX's affine quantization accepts.
var (
	ValidBits       = []int{2, 3, 4, 5, 6, 8}
	ValidGroupSizes = []int{32, 64, 128}
)

// Defaults, as in MLX.
const (
	DefaultBits      = 4
	DefaultGroupSize = 64
)

// Params are the bits per weight and the number of consecutive weights of a row
// that share one scale and one bias.
type Params struct {
	GroupSize int `json:"group_size"`
	Bits      int `json:"bits"`
}

// Validate reports bits or group sizes MLX does not accept.
func (p Params) Validate() error {
	okBits, okGroup := false, false
	for _, b := range ValidBits {
		okBits = okBits || p.Bits == b
	}
	for _, g := range ValidGroupSizes {
		okGroup = okGroup || p.GroupSize == g
	}
	if !okBits {
		return fmt.Errorf("quant: bits %d: want one of 2, 3, 4, 5, 6, 8", p.Bits)
	}
	if !okGroup {
		return fmt.Errorf("quant: group size %d: want 32, 64 or 128", p.GroupSize)
	}
	return nil
}

// PackedCols is the number of uint32 words holding one row of cols weights.
func (p Params) PackedCols(cols int) int { return cols * p.Bits / 32 }

// Matrix is a rows×cols float matrix quantized group-wise along its rows, in
// MLX's affine layout:
//
//	w[r][c] ≈ Scales[r][c/G] · q[r][c] + Biases[r][c/G]
//
// where q is an unsigned Bits-wide integer. Each row's q values are stored as
// one little-endian bit stream, value c at bits [c·Bits, (c+1)·Bits) of the row,
// in Packed as uint32 words (a 3-, 5- or 6-bit value may straddle two words).
// This is the layout of MLX's `<name>.weight` (uint32, (rows, cols·Bits/32)),
// `<name>.scales` and `<name>.biases` ((rows, cols/G)).
type Matrix struct {
	Params
	Rows, Cols int
	Packed     []uint32  // rows × PackedCols(cols)
	Scales     []float32 // rows × cols/GroupSize
	Biases     []float32 // rows × cols/GroupSize
}

// Groups is the number of groups in a row.
func (m *Matrix) Groups() int { return m.Cols / m.GroupSize }

// Stride is the number of uint32 words per row.
func (m *Matrix) Stride() int { return m.PackedCols(m.Cols) }

// Bytes is the storage the matrix takes: packed words, scales and biases.
func (m *Matrix) Bytes() int64 {
	return 4*int64(len(m.Packed)) + 4*int64(len(m.Scales)) + 4*int64(len(m.Biases))
}

// CheckShape reports whether rows×cols can be quantized with p: cols must be a
// positive multiple of the group size.
func (p Params) CheckShape(rows, cols int) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if rows <= 0 || cols <= 0 || cols%p.GroupSize != 0 {
		return fmt.Errorf("quant: a %d×%d matrix: the row length must be a positive multiple of the group size %d", rows, cols, p.GroupSize)
	}
	return nil
}

// NewMatrix returns a zero quantized matrix (every q, scale and bias 0).
func NewMatrix(p Params, rows, cols int) (*Matrix, error) {
	if err := p.CheckShape(rows, cols); err != nil {
		return nil, err
	}
	g := cols / p.GroupSize
	return &Matrix{
		Params: p, Rows: rows, Cols: cols,
		Packed: make([]uint32, rows*p.PackedCols(cols)),
		Scales: make([]float32, rows*g),
		Biases: make([]float32, rows*g),
	}, nil
}

// Quantize quantizes the row-major rows×cols matrix w as MLX's affine_quantize
// does, in float32 arithmetic. For each group of G weights with minimum lo and
// maximum hi:
//
//   - the scale is (hi−lo)/(2^bits−1), at least 1e-7, and it is negative unless
//     |lo| > |hi|: the end of larger magnitude (the "edge", lo or hi) maps to q = 0;
//   - q0 = round(edge/scale); when q0 ≠ 0 the scale becomes edge/q0 and the bias
//     the edge, so that 0 is exactly q = −q0; when q0 = 0 the bias is 0;
//   - q = clamp(round((w−bias)/scale), 0, 2^bits−1), rounding half to even.
func Quantize(p Params, w []float32, rows, cols int) (*Matrix, error) {
	m, err := NewMatrix(p, rows, cols)
	if err != nil {
		return nil, err
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quant: Quantize: %d values for a %d×%d matrix", len(w), rows, cols)
	}
	nBins := float32(int(1)<<p.Bits - 1)
	G, stride := p.GroupSize, m.Stride()
	q := make([]uint8, cols)
	for r := range rows {
		row := w[r*cols : (r+1)*cols]
		for g := range cols / G {
			grp := row[g*G : (g+1)*G]
			for j, v := range grp {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return nil, fmt.Errorf("quant: Quantize: weight (%d, %d) is %g", r, g*G+j, v)
				}
			}
			scale, bias := groupParams(grp, nBins)
			for j, v := range grp {
				x := roundEven((v - bias) / scale)
				x = min(max(x, 0), nBins)
				q[g*G+j] = uint8(x)
			}
			m.Scales[r*m.Groups()+g] = scale
			m.Biases[r*m.Groups()+g] = bias
		}
		Pack(m.Packed[r*stride:(r+1)*stride], q, p.Bits)
	}
	return m, nil
}

// groupParams is MLX's choice of scale and bias for one group.
func groupParams(grp []float32, nBins float32) (scale, bias float32) {
	lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range grp {
		lo, hi = min(lo, v), max(hi, v)
	}
	const eps = float32(1e-7)
	positive := abs32(lo) > abs32(hi)
	scale = max((hi-lo)/nBins, eps)
	edge := hi
	if positive {
		edge = lo
	} else {
		scale = -scale
	}
	q0 := roundEven(edge / scale)
	if q0 != 0 {
		return edge / q0, edge
	}
	return scale, 0
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// roundEven rounds to the nearest integer, halves to even (C's rint).
func roundEven(x float32) float32 { return float32(math.RoundToEven(float64(x))) }

// Pack writes the bits-wide values q (each < 2^bits) into dst as one
// little-endian bit stream: value i occupies bits [i·bits, (i+1)·bits). dst must
// hold len(q)·bits/32 words; it is overwritten.
func Pack(dst []uint32, q []uint8, bits int) {
	n := len(q) * bits / 32
	if len(q)*bits%32 != 0 || len(dst) < n {
		panic(fmt.Sprintf("quant: Pack: %d values of %d bits into %d words", len(q), bits, len(dst)))
	}
	clear(dst[:n])
	for i, v := range q {
		pos := i * bits
		w, s := pos>>5, uint(pos&31)
		dst[w] |= uint32(v) << s
		if int(s)+bits > 32 {
			dst[w+1] |= uint32(v) >> (32 - s)
		}
	}
}

// Unpack reads len(dst) bits-wide values from the bit stream src (see [Pack]).
func Unpack(dst []uint8, src []uint32, bits int) {
	if len(dst)*bits > 32*len(src) {
		panic(fmt.Sprintf("quant: Unpack: %d values of %d bits from %d words", len(dst), bits, len(src)))
	}
	mask := uint32(1)<<bits - 1
	for i := range dst {
		pos := i * bits
		w, s := pos>>5, uint(pos&31)
		v := src[w] >> s
		if int(s)+bits > 32 {
			v |= src[w+1] << (32 - s)
		}
		dst[i] = uint8(v & mask)
	}
}

// Q returns the quantized integer at row r, column c.
func (m *Matrix) Q(r, c int) uint8 {
	row := m.Packed[r*m.Stride() : (r+1)*m.Stride()]
	pos := c * m.Bits
	w, s := pos>>5, uint(pos&31)
	v := row[w] >> s
	if int(s)+m.Bits > 32 {
		v |= row[w+1] << (32 - s)
	}
	return uint8(v & (1<<m.Bits - 1))
}

// DequantizeRow writes row r of the matrix, scale·q + bias, into dst (length Cols).
func (m *Matrix) DequantizeRow(dst []float32, r int) {
	q := make([]uint8, m.Cols)
	m.dequantizeRow(dst, q, r)
}

func (m *Matrix) dequantizeRow(dst []float32, q []uint8, r int) {
	stride, G, ng := m.Stride(), m.GroupSize, m.Groups()
	w := m.Packed[r*stride : (r+1)*stride]
	switch m.Bits {
	case 4:
		for g := range ng {
			s, b := m.Scales[r*ng+g], m.Biases[r*ng+g]
			d := dst[g*G : (g+1)*G]
			for i, v := range w[g*G/8 : (g+1)*G/8] {
				o := d[8*i : 8*i+8 : 8*i+8]
				o[0] = s*float32(v&15) + b
				o[1] = s*float32(v>>4&15) + b
				o[2] = s*float32(v>>8&15) + b
				o[3] = s*float32(v>>12&15) + b
				o[4] = s*float32(v>>16&15) + b
				o[5] = s*float32(v>>20&15) + b
				o[6] = s*float32(v>>24&15) + b
				o[7] = s*float32(v>>28) + b
			}
		}
		return
	case 8:
		for g := range ng {
			s, b := m.Scales[r*ng+g], m.Biases[r*ng+g]
			d := dst[g*G : (g+1)*G]
			for i, v := range w[g*G/4 : (g+1)*G/4] {
				o := d[4*i : 4*i+4 : 4*i+4]
				o[0] = s*float32(v&255) + b
				o[1] = s*float32(v>>8&255) + b
				o[2] = s*float32(v>>16&255) + b
				o[3] = s*float32(v>>24) + b
			}
		}
		return
	}
	Unpack(q[:m.Cols], w, m.Bits)
	for g := range ng {
		s, b := m.Scales[r*ng+g], m.Biases[r*ng+g]
		for j := g * G; j < (g+1)*G; j++ {
			dst[j] = s*float32(q[j]) + b
		}
	}
}

// Dequantize returns the rows×cols float32 matrix the quantized one stands for.
func (m *Matrix) Dequantize() []float32 {
	out := make([]float32, m.Rows*m.Cols)
	q := make([]uint8, m.Cols)
	for r := range m.Rows {
		m.dequantizeRow(out[r*m.Cols:(r+1)*m.Cols], q, r)
	}
	return out
}
