//go:build !amd64

package attention

func halvesToFloat32(dst []float32, src []uint16) { halvesToFloat32Go(dst, src) }

func float32ToHalves(dst []uint16, src []float32) { float32ToHalvesGo(dst, src) }

func halfRowsToFloat32(dst []float32, src []uint16, rows, d, stride int) {
	for r := range rows {
		halvesToFloat32(dst[r*d:(r+1)*d], src[r*stride:])
	}
}
