package models

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/quant"
)

// embedPacked adds each batch row's own positions when given rows (batched
// generation), the same rows as a common offset otherwise.
func TestEmbedPackedRows(t *testing.T) {
	m, err := New(GPT2Config(40, 32, 1, 2, 16), autodiff.NewRNG(1))
	require.NoError(t, err)
	_, err = m.Quantize(quant.Config{Params: quant.Params{GroupSize: 32, Bits: 8}}, nil)
	require.NoError(t, err)
	require.NotNil(t, m.Embed.Packed)
	ids := autodiff.FromInt32([]int32{1, 2, 3, 4, 5, 6}, 2, 3)
	pos := m.Positions.Weight
	both := m.embedPacked(nil, pos, ids, 0, []int{2, 5}).Float32s()
	row0 := m.embedPacked(nil, pos, autodiff.Slice(ids, 0, 0, 1), 2, nil).Float32s()
	row1 := m.embedPacked(nil, pos, autodiff.Slice(ids, 0, 1, 2), 5, nil).Float32s()
	assert.Equal(t, append(row0, row1...), both)
	tokens := m.Embed.Forward(nil, autodiff.Slice(ids, 0, 0, 1)).Float32s()
	for i := range 32 {
		assert.Equal(t, tokens[i]+pos.Float32s()[2*32+i], row0[i])
	}
}
