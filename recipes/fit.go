package recipes

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/generate"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/optim"
)

// FitOptions are the parts of a run that are not in the recipe.
type FitOptions struct {
	// Out is the run directory (metrics.jsonl, loss.png, checkpoints/); empty
	// means train.out.
	Out string
	// Resume names a checkpoint directory, or a run directory whose latest
	// checkpoint is taken, to continue from exactly.
	Resume string
	// Log receives the report lines; nil discards them.
	Log io.Writer
	// Progress, when set, is told the state after every step (a progress bar).
	Progress func(Progress)
	// Stop, once closed, makes the run save a checkpoint and return at the end of
	// the step in progress (Ctrl-C, SIGTERM).
	Stop <-chan struct{}
	// NoSave skips checkpoints and run files (mlxtrain bench).
	NoSave bool
}

// Progress is the state of a run after a step.
type Progress struct {
	Step, Total int
	Loss, LR    float64
	TokensPerS  float64
	PeakRSS     int64 // bytes; 0 when the platform does not say
	PoolPeak    int64 // the tensor pool's high-water mark in bytes
}

// FitResult summarises a run.
type FitResult struct {
	Checkpoint string  // the last checkpoint written ("" with NoSave)
	Step       int     // steps completed
	TrainLoss  float64 // mean loss of the last report window
	ValLoss    float64 // last validation loss; NaN when never evaluated
	Accuracy   float64 // last exact-match accuracy on the task; NaN without a task
	Stopped    bool    // ended early by Stop
	TokensPerS float64 // training throughput over the whole run
	Params     int
}

// LossError is returned when the loss becomes NaN or infinite: the run stops and
// the last good checkpoint stays as it was.
type LossError struct {
	Step       int
	Loss       float64
	Checkpoint string
}

func (e *LossError) Error() string {
	keep := "no checkpoint was written yet"
	if e.Checkpoint != "" {
		keep = "the last good checkpoint is " + e.Checkpoint
	}
	return fmt.Sprintf("loss became %v at step %d; stopped (%s)", e.Loss, e.Step, keep)
}

// run is one fit in progress.
type run struct {
	r      *Recipe
	ft     *fineTune // nil unless model.from
	opt    FitOptions
	out    string
	d      *runData
	model  *models.Model
	params []autodiff.Param
	optim  *optim.Optimizer
	batch  *data.Batcher
	dropRN *autodiff.RNG
	step   int
	tokens int64
	best   *float64
	bestAt int64
	last   string // last checkpoint directory
	hist   []metricLine
	log    io.Writer
	scaler *LossScaler // f16 loss scaling; nil otherwise
	skips  int         // steps skipped for a gradient overflow in f16
}

// Fit trains the recipe's model on its data: the effective recipe is validated,
// the model built (or loaded with opt.Resume), then iters optimizer steps run
// with reports, evaluations and checkpoints at the recipe's cadence.
func Fit(r *Recipe, opt FitOptions) (*FitResult, error) {
	r, ft, err := r.prepareFineTune() // first: the base fills the architecture keys left out
	if err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	ru := &run{r: r, ft: ft, opt: opt, out: opt.Out, log: opt.Log}
	if ru.out == "" {
		ru.out = r.Train.Out
	}
	if ru.log == nil {
		ru.log = io.Discard
	}
	if ru.d, err = r.loadData(); err != nil {
		return nil, err
	}
	if err := ru.buildModel(ru.d.tok.VocabSize()); err != nil {
		return nil, err
	}
	if err := ru.setupTraining(); err != nil {
		return nil, err
	}
	if ru.batch, err = data.NewBatcher(ru.d.train, r.BatchConfig(ru.d.tok)); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	r = r.withEpochs(ru.batch.RowsPerEpoch())
	ru.r = r
	if ru.optim, err = r.NewOptimizer(ru.params, r.Train.Iters); err != nil {
		return nil, err
	}
	defer ru.optim.Release()
	ru.dropRN = autodiff.NewRNG(r.Train.Seed ^ 0x5eed)
	if err := ru.checkMemory(); err != nil {
		return nil, err
	}
	if opt.Resume != "" {
		if err := ru.resume(opt.Resume); err != nil {
			return nil, err
		}
	}
	return ru.loop()
}

func (ru *run) loop() (*FitResult, error) {
	r := ru.r
	res := &FitResult{ValLoss: math.NaN(), Accuracy: math.NaN(), Params: ru.model.NumParams()}
	fmt.Fprintf(ru.log, "model: %d parameters, %d layers, d_model %d; data: %d training examples, %d validation\n",
		res.Params, r.Model.Layers, r.Model.DModel, len(ru.d.train), len(ru.d.valid))
	var (
		windowLoss  float64
		windowSteps int
		windowTok   int64
		windowStart = time.Now()
		runStart    = time.Now()
		runTokens   int64
	)
	accum := max(r.Train.GradAccumulationSteps, 1)
	for ru.step < r.Train.Iters {
		if ru.stopped() {
			res.Stopped = true
			break
		}
		loss, ntok := ru.trainStep(accum)
		ru.step++
		ru.tokens += ntok
		runTokens += ntok
		windowTok += ntok
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, &LossError{Step: ru.step, Loss: loss, Checkpoint: ru.last}
		}
		windowLoss += loss
		windowSteps++
		lr := ru.optim.LearningRate()
		if ru.opt.Progress != nil {
			ru.opt.Progress(Progress{Step: ru.step, Total: r.Train.Iters, Loss: loss, LR: lr,
				TokensPerS: float64(runTokens) / time.Since(runStart).Seconds(), PeakRSS: PeakRSS(), PoolPeak: metal.StoragePool().Peak()})
		}
		if ru.step%r.Train.StepsPerReport == 0 || ru.step == r.Train.Iters {
			el := time.Since(windowStart).Seconds()
			res.TrainLoss = windowLoss / float64(windowSteps)
			m := metricLine{Step: ru.step, TrainLoss: f64p(res.TrainLoss), LR: lr, TokensPerS: float64(windowTok) / el,
				PeakRSS: PeakRSS(), PoolPeak: metal.StoragePool().Peak(), MoE: ru.moeMetrics()}
			extra := moeSummary(m.MoE)
			if ru.scaler != nil {
				m.LossScale, m.Skipped = ru.scaler.Scale, ru.skips
				extra += fmt.Sprintf("; loss scale %g, %d skipped", ru.scaler.Scale, ru.skips)
			}
			ru.record(m)
			fmt.Fprintf(ru.log, "step %d/%d: loss %.4f, lr %.3g, %.0f tokens/s, peak %s (pool %s)%s\n", ru.step, r.Train.Iters,
				res.TrainLoss, lr, m.TokensPerS, metal.HumanBytes(m.PeakRSS), metal.HumanBytes(m.PoolPeak), extra)
			windowLoss, windowSteps, windowTok, windowStart = 0, 0, 0, time.Now()
		}
		evalNow := r.Train.StepsPerEval > 0 && (ru.step%r.Train.StepsPerEval == 0 || ru.step == r.Train.Iters)
		if evalNow {
			res.ValLoss, res.Accuracy = ru.evaluate()
		}
		if !ru.opt.NoSave && r.Train.SaveEvery > 0 && ru.step%r.Train.SaveEvery == 0 && ru.step < r.Train.Iters {
			if err := ru.save(evalNow, res.ValLoss); err != nil {
				return nil, err
			}
		}
	}
	res.Step = ru.step
	res.TokensPerS = float64(runTokens) / time.Since(runStart).Seconds()
	if ru.opt.NoSave {
		return res, nil
	}
	if !res.Stopped && (r.Train.StepsPerEval <= 0) {
		res.ValLoss, res.Accuracy = ru.evaluate()
	}
	if err := ru.save(true, res.ValLoss); err != nil {
		return nil, err
	}
	if err := ru.writePlot(); err != nil {
		fmt.Fprintf(ru.log, "warning: loss.png: %v\n", err)
	}
	res.Checkpoint = ru.last
	return res, nil
}

func (ru *run) stopped() bool {
	if ru.opt.Stop == nil {
		return false
	}
	select {
	case <-ru.opt.Stop:
		return true
	default:
		return false
	}
}

// trainStep runs one optimizer step over accum micro-batches and returns the mean
// loss and the tokens consumed.
func (ru *run) trainStep(accum int) (float64, int64) {
	var total float64
	var ntok int64
	// Each micro-batch has its own tape, so its activations are gone before the
	// next one runs; the earlier ones' gradients are summed in sum.
	var sum gradSum
	defer sum.release()
	var tp *autodiff.Tape
	for range accum {
		if tp != nil {
			sum.add(optim.Grads(tp, ru.params))
			tp.Release()
		}
		tp = autodiff.NewTape()
		c := &layers.Ctx{Tape: tp, Train: true, RNG: ru.dropRN, Frozen: ru.frozen()}
		b := ru.batch.Next()
		inputs := autodiff.FromInt32(b.Inputs, b.Size, b.SeqLen)
		targets := autodiff.FromInt32(b.Targets, b.Size, b.SeqLen)
		mask := autodiff.FromFloat32(b.Mask, b.Size, b.SeqLen)
		loss := ru.model.Loss(c, inputs, targets, mask)
		if accum > 1 {
			loss = autodiff.MulScalar(loss, 1/float64(accum))
		}
		total += loss.Item()
		ru.backward(tp, loss)
		inputs.Release()
		targets.Release()
		mask.Release()
		ntok += int64(b.Size * b.SeqLen)
	}
	defer tp.Release()
	if math.IsNaN(total) || math.IsInf(total, 0) {
		return total, ntok
	}
	grads := sum.addTo(optim.Grads(tp, ru.params))
	if !ru.unscale(grads) {
		return total, ntok // f16 overflow: the step is skipped, the scale halved
	}
	if ru.r.Train.MaxGradNorm > 0 {
		optim.ClipGradNorm(grads, ru.r.Train.MaxGradNorm)
	}
	ru.optim.Step(grads)
	return total, ntok
}

// evaluate returns the validation loss (NaN without validation data) and the
// task's exact-match accuracy (NaN without a task), and records them.
func (ru *run) evaluate() (float64, float64) {
	r := ru.r
	valLoss, acc := math.NaN(), math.NaN()
	if len(ru.d.valid) > 0 {
		cfg := r.BatchConfig(ru.d.tok)
		cfg.NoShuffle = true
		if vb, err := data.NewBatcher(ru.d.valid, cfg); err == nil {
			batches := vb.OnePass()
			if r.Train.ValBatches > 0 && len(batches) > r.Train.ValBatches {
				batches = batches[:r.Train.ValBatches]
			}
			var sum, weight float64
			for _, b := range batches {
				inputs := autodiff.FromInt32(b.Inputs, b.Size, b.SeqLen)
				targets := autodiff.FromInt32(b.Targets, b.Size, b.SeqLen)
				mask := autodiff.FromFloat32(b.Mask, b.Size, b.SeqLen)
				l := ru.model.Loss(nil, inputs, targets, mask)
				n := 0.0
				for _, m := range b.Mask {
					n += float64(m)
				}
				sum += l.Item() * n
				weight += n
				for _, t := range []*autodiff.Tensor{l, inputs, targets, mask} {
					t.Release()
				}
			}
			if weight > 0 {
				valLoss = sum / weight
			}
		}
	}
	if ru.d.task != nil {
		eos := ru.d.tok.Special().EOS
		maxNew := r.Train.MaxSeqLength
		acc = data.Accuracy(ru.evalProblems(), func(prompt []int32, n int) []int32 {
			out, err := generate.Greedy(ru.model, prompt, min(n, maxNew), eos)
			if err != nil {
				return nil
			}
			return out
		})
	}
	m := metricLine{Step: ru.step, Kind: "eval"}
	if !math.IsNaN(valLoss) {
		m.ValLoss = f64p(valLoss)
		ppl := math.Exp(valLoss)
		m.Perplexity = &ppl
		if ru.best == nil || valLoss < *ru.best {
			ru.best, ru.bestAt = f64p(valLoss), int64(ru.step)
		}
	}
	if !math.IsNaN(acc) {
		m.Accuracy = f64p(acc)
	}
	ru.record(m)
	line := fmt.Sprintf("eval at step %d:", ru.step)
	if m.ValLoss != nil {
		line += fmt.Sprintf(" val loss %.4f, perplexity %.3f", valLoss, *m.Perplexity)
	}
	if m.Accuracy != nil {
		line += fmt.Sprintf(" accuracy %.1f%% (%d held-out problems)", 100*acc, len(ru.evalProblems()))
	}
	fmt.Fprintln(ru.log, line)
	ru.sample()
	return valLoss, acc
}

func f64p(v float64) *float64 { return &v }

// metricLine is one line of metrics.jsonl.
type metricLine struct {
	Step       int      `json:"step"`
	Kind       string   `json:"kind,omitempty"` // "" for training reports, "eval"
	TrainLoss  *float64 `json:"train_loss,omitempty"`
	ValLoss    *float64 `json:"val_loss,omitempty"`
	Perplexity *float64 `json:"val_perplexity,omitempty"`
	Accuracy   *float64 `json:"accuracy,omitempty"`
	LR         float64  `json:"lr,omitempty"`
	TokensPerS float64  `json:"tokens_per_s,omitempty"`
	PeakRSS    int64    `json:"peak_rss_bytes,omitempty"`
	PoolPeak   int64    `json:"pool_peak_bytes,omitempty"`
	// MoE is each mixture-of-experts layer's routing in the report's last step.
	MoE []moeMetric `json:"moe,omitempty"`
	// LossScale and Skipped are the f16 loss scale and the steps skipped so far.
	LossScale float64 `json:"loss_scale,omitempty"`
	Skipped   int     `json:"skipped_steps,omitempty"`
}

// record appends m to metrics.jsonl in the run directory.
func (ru *run) record(m metricLine) {
	ru.hist = append(ru.hist, m)
	if ru.opt.NoSave {
		return
	}
	if err := os.MkdirAll(ru.out, 0o755); err != nil {
		fmt.Fprintf(ru.log, "warning: %v\n", err)
		return
	}
	f, err := os.OpenFile(filepath.Join(ru.out, "metrics.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(ru.log, "warning: %v\n", err)
		return
	}
	defer f.Close()
	b, _ := json.Marshal(m)
	f.Write(append(b, '\n'))
}

// checkpointDir is where a run's checkpoints go.
func (ru *run) checkpointDir() string { return filepath.Join(ru.out, "checkpoints") }

// save writes a checkpoint of the current step and applies train.keep.
func (ru *run) save(evaluated bool, valLoss float64) error {
	r := ru.r
	pos, err := json.Marshal(ru.batch.Position())
	if err != nil {
		return err
	}
	cfgJSON, err := json.MarshalIndent(ru.model.Config, "", "  ")
	if err != nil {
		return err
	}
	var tokJSON []byte
	if ru.d.bpe != nil {
		if tokJSON, err = ru.d.bpe.MarshalJSON(); err != nil {
			return fmt.Errorf("tokenizer.json: %w", err)
		}
	}
	opt := map[string]*autodiff.Tensor{}
	for _, p := range ru.optim.State() {
		opt[p.Name] = p.Value
	}
	st := checkpoints.TrainerState{
		OptimizerStep: int64(ru.step), ScheduleStep: int64(ru.step),
		LearningRate: ru.optim.LearningRate(), TokensSeen: ru.tokens, DataPosition: pos,
		RNG:     checkpoints.RNGState{Seed: ru.dropRN.Seed, Offset: ru.dropRN.Offset},
		Metrics: map[string]float64{}, BestValLoss: ru.best, BestStep: ru.bestAt,
	}
	if ru.scaler != nil {
		st.LossScale = ru.scaler.State()
	}
	if evaluated && !math.IsNaN(valLoss) {
		st.ValLoss = f64p(valLoss)
	}
	if n := len(ru.hist); n > 0 {
		for _, m := range ru.hist {
			if m.TrainLoss != nil {
				st.Metrics["train_loss"] = *m.TrainLoss
			}
			if m.Accuracy != nil {
				st.Metrics["accuracy"] = *m.Accuracy
			}
		}
	}
	ck := &checkpoints.Checkpoint{Optimizer: opt, State: st, Recipe: []byte(r.Effective()), Config: cfgJSON, Tokenizer: tokJSON}
	if err := ru.putWeights(ck); err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	dir, err := checkpoints.SaveDir(ru.checkpointDir(), int64(ru.step), ck)
	if err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	ru.last = dir
	if _, err := checkpoints.Retain(ru.checkpointDir(), r.Train.Keep); err != nil {
		fmt.Fprintf(ru.log, "warning: applying train.keep: %v\n", err)
	}
	fmt.Fprintf(ru.log, "saved %s\n", dir)
	return nil
}

// resume loads weights, optimizer state, data position and RNG from a checkpoint
// (or the latest one of a run directory).
func (ru *run) resume(path string) error {
	dir := path
	if _, err := os.Stat(filepath.Join(path, checkpoints.StateFile)); err != nil {
		latest, lerr := checkpoints.Latest(filepath.Join(path, "checkpoints"))
		if lerr != nil {
			if latest, lerr = checkpoints.Latest(path); lerr != nil {
				return fmt.Errorf("--resume %s: no checkpoint there: %w", path, lerr)
			}
		}
		dir = latest
	}
	ck, err := checkpoints.LoadDir(dir)
	if err != nil {
		return fmt.Errorf("--resume: %w", err)
	}
	defer ck.Release()
	if err := ru.loadWeights(ck, dir); err != nil {
		return err
	}
	state := make([]optim.Param, 0, len(ck.Optimizer))
	for name, t := range ck.Optimizer {
		state = append(state, optim.Param{Name: name, Value: t})
	}
	if err := ru.optim.LoadState(state); err != nil {
		return fmt.Errorf("--resume %s: optimizer.safetensors: %w", dir, err)
	}
	var pos data.Position
	if err := json.Unmarshal(ck.State.DataPosition, &pos); err != nil {
		return fmt.Errorf("--resume %s: trainer_state.json: data_position: %w", dir, err)
	}
	if err := ru.batch.SetPosition(pos); err != nil {
		return fmt.Errorf("--resume %s: trainer_state.json: data_position: %w", dir, err)
	}
	ru.dropRN.Seed, ru.dropRN.Offset = ck.State.RNG.Seed, ck.State.RNG.Offset
	if ru.scaler != nil && ck.State.LossScale != nil {
		ru.scaler.SetState(ck.State.LossScale)
	}
	ru.step = int(ck.State.Step)
	ru.tokens = ck.State.TokensSeen
	ru.best, ru.bestAt = ck.State.BestValLoss, ck.State.BestStep
	ru.last = dir
	if ru.step > ru.r.Train.Iters {
		return fmt.Errorf("--resume %s: checkpoint is at step %d, beyond train.iters = %d", dir, ru.step, ru.r.Train.Iters)
	}
	fmt.Fprintf(ru.log, "resumed from %s at step %d\n", dir, ru.step)
	return nil
}

// checkMemory refuses a run whose rough memory estimate exceeds the machine's.
func (ru *run) checkMemory() error {
	total := totalMemory()
	if total <= 0 {
		return nil
	}
	need := ru.estimateMemory()
	if need > total {
		return fmt.Errorf("the run needs about %s (weights, gradients, optimizer state and activations) but the machine has %s: lower train.batch_size, train.max_seq_length or the model size, or set train.grad_checkpoint = true",
			metal.HumanBytes(need), metal.HumanBytes(total))
	}
	return nil
}

// estimateMemory is the weights, the gradients and two optimizer moments of the
// trained parameters, and the activations a step keeps (about 16 tensors of
// batch×seq×d_model per layer and the logits with their gradient), all float32.
func (ru *run) estimateMemory() int64 {
	r := ru.r
	p := int64(ru.model.NumParams())
	tokens := int64(r.Train.BatchSize) * int64(r.Train.MaxSeqLength)
	per := int64(16 * r.Model.DModel)
	if r.Train.GradCheckpoint {
		per = int64(2 * r.Model.DModel)
	}
	act := tokens*per*int64(r.Model.Layers) + 3*tokens*int64(ru.model.Config.VocabSize)
	// Gradients and moments exist for the trained parameters only (a LoRA
	// run's adapters), the weights for all of them.
	var trained int64
	for _, q := range ru.params {
		trained += int64(q.Value.Len())
	}
	return 4 * (p + 3*trained + act)
}

// EvalResult is what Evaluate measured.
type EvalResult struct {
	ValLoss    float64 // NaN without validation data
	Perplexity float64
	Accuracy   float64 // NaN without a synthetic task
	Problems   int
}

// Evaluate scores model m on the recipe's validation data (and task), as the fit
// loop does at each evaluation.
func Evaluate(r *Recipe, m *models.Model, log io.Writer) (*EvalResult, error) {
	if log == nil {
		log = io.Discard
	}
	d, err := r.loadData()
	if err != nil {
		return nil, err
	}
	ru := &run{r: r, opt: FitOptions{NoSave: true}, d: d, model: m, log: log}
	loss, acc := ru.evaluate()
	res := &EvalResult{ValLoss: loss, Perplexity: math.Exp(loss), Accuracy: acc}
	if d.task != nil {
		res.Problems = len(ru.evalProblems())
	}
	return res, nil
}
