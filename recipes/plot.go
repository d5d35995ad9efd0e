package recipes

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
)

// The colours of loss.png: training loss blue, validation loss orange, on white
// with grey axes and grid lines at each power of ten of the loss.
var (
	plotTrain = color.RGBA{31, 119, 180, 255}
	plotValid = color.RGBA{255, 127, 14, 255}
	plotAxis  = color.RGBA{90, 90, 90, 255}
	plotGrid  = color.RGBA{225, 225, 225, 255}
)

// writePlot draws the training and validation loss against the step, on a log
// scale, into loss.png in the run directory.
func (ru *run) writePlot() error {
	var train, valid [][2]float64
	for _, m := range ru.hist {
		if m.TrainLoss != nil && *m.TrainLoss > 0 {
			train = append(train, [2]float64{float64(m.Step), *m.TrainLoss})
		}
		if m.ValLoss != nil && *m.ValLoss > 0 {
			valid = append(valid, [2]float64{float64(m.Step), *m.ValLoss})
		}
	}
	if len(train) == 0 {
		return nil
	}
	img := renderLossPlot(train, valid, 640, 400)
	path := filepath.Join(ru.out, "loss.png")
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func renderLossPlot(train, valid [][2]float64, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	const margin = 40
	xmax, ymin, ymax := 1.0, math.Inf(1), math.Inf(-1)
	for _, s := range [][][2]float64{train, valid} {
		for _, p := range s {
			xmax = math.Max(xmax, p[0])
			ymin = math.Min(ymin, math.Log10(p[1]))
			ymax = math.Max(ymax, math.Log10(p[1]))
		}
	}
	lo, hi := math.Floor(ymin), math.Ceil(ymax)
	if hi <= lo {
		hi = lo + 1
	}
	px := func(x float64) int { return margin + int(x/xmax*float64(w-2*margin)) }
	py := func(y float64) int {
		return h - margin - int((math.Log10(y)-lo)/(hi-lo)*float64(h-2*margin))
	}
	for d := lo; d <= hi; d++ { // grid at each decade
		y := py(math.Pow(10, d))
		for x := margin; x < w-margin; x++ {
			img.Set(x, y, plotGrid)
		}
	}
	for x := margin; x < w-margin; x++ {
		img.Set(x, h-margin, plotAxis)
	}
	for y := margin; y <= h-margin; y++ {
		img.Set(margin, y, plotAxis)
	}
	draw := func(s [][2]float64, c color.Color) {
		for i := 1; i < len(s); i++ {
			plotLine(img, px(s[i-1][0]), py(s[i-1][1]), px(s[i][0]), py(s[i][1]), c)
		}
		for _, p := range s { // a small square at every point
			for dx := -1; dx <= 1; dx++ {
				for dy := -1; dy <= 1; dy++ {
					img.Set(px(p[0])+dx, py(p[1])+dy, c)
				}
			}
		}
	}
	draw(train, plotTrain)
	draw(valid, plotValid)
	return img
}

// plotLine draws a 2-pixel-wide line with Bresenham's algorithm.
func plotLine(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
