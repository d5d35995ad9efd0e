package attention

// The inner loops of the attention kernels. Go does not vectorise, so the gain
// comes from register blocking: dot4 loads each query element once for four keys
// (four independent accumulators hide the add latency), and axpy4 loads and stores
// each destination element once for four sources. Measured on Zen3 in float32,
// scalar Go reaches about 9 GFLOP/s per core with these, against 6 for a plain
// dot product.

// dot returns Σ x[i]·y[i] over len(x).
func dot[T Float](x, y []T) T {
	y = y[:len(x)]
	var s0, s1, s2, s3 T
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dot4 returns the dot products of x with k0, k1, k2 and k3 (each len(x) long).
func dot4[T Float](x, k0, k1, k2, k3 []T) (T, T, T, T) {
	n := len(x)
	k0, k1, k2, k3 = k0[:n], k1[:n], k2[:n], k3[:n]
	var s0, s1, s2, s3 T
	for i, a := range x {
		s0 += a * k0[i]
		s1 += a * k1[i]
		s2 += a * k2[i]
		s3 += a * k3[i]
	}
	return s0, s1, s2, s3
}

// dots sets s[j] = scale · x·rows[j·stride : j·stride+len(x)] for j < len(s).
func dots[T Float](s, x, rows []T, stride int, scale T) {
	n := len(x)
	j := 0
	for ; j+4 <= len(s); j += 4 {
		o := j * stride
		a, b, c, d := dot4(x, rows[o:o+n], rows[o+stride:o+stride+n], rows[o+2*stride:o+2*stride+n], rows[o+3*stride:o+3*stride+n])
		s[j], s[j+1], s[j+2], s[j+3] = a*scale, b*scale, c*scale, d*scale
	}
	for ; j < len(s); j++ {
		o := j * stride
		s[j] = dot(x, rows[o:o+n]) * scale
	}
}

// axpy4 adds a0·x0 + a1·x1 + a2·x2 + a3·x3 to dst.
func axpy4[T Float](dst []T, a0, a1, a2, a3 T, x0, x1, x2, x3 []T) {
	n := len(dst)
	x0, x1, x2, x3 = x0[:n], x1[:n], x2[:n], x3[:n]
	for i := range dst {
		dst[i] += a0*x0[i] + a1*x1[i] + a2*x2[i] + a3*x3[i]
	}
}

// axpy adds a·x to dst.
func axpy[T Float](dst []T, a T, x []T) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += a * x[i]
	}
}

// combine adds Σ_j w[j]·rows[j·stride : j·stride+len(dst)] to dst, skipping
// groups of four zero weights (masked scores).
func combine[T Float](dst, w, rows []T, stride int) {
	n := len(dst)
	j := 0
	for ; j+4 <= len(w); j += 4 {
		a, b, c, d := w[j], w[j+1], w[j+2], w[j+3]
		if a == 0 && b == 0 && c == 0 && d == 0 {
			continue
		}
		o := j * stride
		axpy4(dst, a, b, c, d, rows[o:o+n], rows[o+stride:o+stride+n], rows[o+2*stride:o+2*stride+n], rows[o+3*stride:o+3*stride+n])
	}
	for ; j < len(w); j++ {
		if w[j] != 0 {
			o := j * stride
			axpy(dst, w[j], rows[o:o+n])
		}
	}
}

func scaleVec[T Float](x []T, a T) {
	for i := range x {
		x[i] *= a
	}
}
