package checkpoints_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
)

func ExampleSave() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.safetensors")

	w := autodiff.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	ids := autodiff.FromInt32([]int32{7, 8}, 2)
	err := checkpoints.Save(path, map[string]*autodiff.Tensor{"linear.weight": w, "ids": ids}, map[string]string{"format": "pt"})
	if err != nil {
		fmt.Println(err)
		return
	}

	f, err := checkpoints.Load(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Release()
	for _, name := range f.Names() {
		t, _ := f.Get(name)
		fmt.Println(name, t)
	}
	fmt.Println(f.Metadata["format"])
	_, err = f.Get("lm_head.weight")
	fmt.Println(err != nil)
	// Output:
	// ids Tensor(int32 (2) [7 8])
	// linear.weight Tensor(float32 (2,3) [1 2 3 4 5 6])
	// pt
	// true
}

func ExampleSaveDir() {
	runDir, _ := os.MkdirTemp("", "run")
	defer os.RemoveAll(runDir)

	for step := int64(100); step <= 300; step += 100 {
		loss := 3.0 / float64(step)
		c := &checkpoints.Checkpoint{
			Model:     map[string]*autodiff.Tensor{"w": autodiff.Full(autodiff.Float32, float64(step), 2)},
			Optimizer: map[string]*autodiff.Tensor{"w.m": autodiff.Zeros(autodiff.Float32, 2)},
			State: checkpoints.TrainerState{
				OptimizerStep: step,
				DataPosition:  []byte(fmt.Sprintf(`{"offset":%d}`, step*64)),
				RNG:           checkpoints.RNGState{Seed: 1, Offset: uint64(step)},
				ValLoss:       &loss,
			},
			Recipe: []byte("[train]\niters = 300\n"),
			Config: []byte(`{"vocab_size":256}`),
		}
		dir, err := checkpoints.SaveDir(runDir, step, c)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("saved", filepath.Base(dir))
	}

	// Resume from the newest checkpoint.
	latest, err := checkpoints.Latest(runDir)
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := checkpoints.LoadDir(latest)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Release()
	fmt.Println("resume at step", c.State.Step, "data", string(c.State.DataPosition), "w", c.Model["w"])

	// Keep the newest checkpoint and the best by validation loss (here the same).
	removed, _ := checkpoints.Retain(runDir, 1)
	for _, d := range removed {
		fmt.Println("removed", filepath.Base(d))
	}
	// Output:
	// saved step-000100
	// saved step-000200
	// saved step-000300
	// resume at step 300 data {"offset":19200} w Tensor(float32 (2) [300 300])
	// removed step-000100
	// removed step-000200
}

func ExampleRetained() {
	loss := func(v float64) *float64 { return &v }
	entries := []checkpoints.Entry{
		{Dir: "step-000100", Step: 100, ValLoss: loss(2.5)},
		{Dir: "step-000200", Step: 200, ValLoss: loss(1.9)},
		{Dir: "step-000300", Step: 300, ValLoss: loss(2.1)},
		{Dir: "step-000400", Step: 400},
	}
	kept, dropped := checkpoints.Retained(entries, 2)
	fmt.Println("kept:", kept[0].Dir, kept[1].Dir, kept[2].Dir)
	fmt.Println("dropped:", dropped[0].Dir)
	// Output:
	// kept: step-000200 step-000300 step-000400
	// dropped: step-000100
}

func ExampleSaveState() {
	dir, _ := os.MkdirTemp("", "state")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, checkpoints.StateFile)

	best := 1.25
	s := checkpoints.TrainerState{
		Step: 50, OptimizerStep: 50, ScheduleStep: 50, LearningRate: 1e-3,
		DataPosition: []byte(`{"epoch":0,"index":3200}`),
		RNG:          checkpoints.RNGState{Seed: 7, Offset: 123456},
		Metrics:      map[string]float64{"train_loss": 1.5},
		BestValLoss:  &best, BestStep: 50,
	}
	if err := checkpoints.SaveState(path, s); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(path)
	fmt.Print(string(b))
	back, _ := checkpoints.LoadState(path)
	fmt.Println(back.RNG.Offset, *back.BestValLoss)
	// Output:
	// {
	//   "format_version": 1,
	//   "step": 50,
	//   "optimizer_step": 50,
	//   "schedule_step": 50,
	//   "learning_rate": 0.001,
	//   "tokens_seen": 0,
	//   "data_position": {
	//     "epoch": 0,
	//     "index": 3200
	//   },
	//   "rng": {
	//     "seed": 7,
	//     "offset": 123456
	//   },
	//   "metrics": {
	//     "train_loss": 1.5
	//   },
	//   "best_val_loss": 1.25,
	//   "best_step": 50
	// }
	// 123456 1.25
}

func ExampleWrite() {
	var buf bytes.Buffer
	h := autodiff.Empty(autodiff.Float16, 2)
	copy(h.Halves(), []uint16{0x3c00, 0xc000}) // 1, -2 as raw float16 bits
	err := checkpoints.Write(&buf, map[string]*autodiff.Tensor{"h": h, "x": autodiff.FromFloat32([]float32{0.5}, 1)}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	b := buf.Bytes()
	n := binary.LittleEndian.Uint64(b)
	fmt.Printf("%d-byte header: %q\n", n, b[8:8+n])
	fmt.Printf("data: % x\n", b[8+n:])

	f, err := checkpoints.Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(f.Tensors["h"].Float64Values(), f.Tensors["x"])
	// Output:
	// 112-byte header: "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}     "
	// data: 00 00 00 3f 00 3c 00 c0
	// [1 -2] Tensor(float32 (1) [0.5])
}
