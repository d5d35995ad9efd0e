package recipes

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/data"
)

// runData is everything the fit loop reads: the tokenizer, the training and
// validation examples, and the synthetic task when there is one.
type runData struct {
	tok   data.Tokenizer
	bpe   *data.BPE // the tokenizer again, when it can be saved as tokenizer.json
	train []data.Example
	valid []data.Example
	task  *data.Task
}

// defaultTaskExamples is how many training examples a task draws when
// data.task.examples is 0: enough that a default run never repeats much.
const defaultTaskExamples = 200_000

func (r *Recipe) loadData() (*runData, error) {
	d := &runData{}
	if r.Data.Task.Kind != "" {
		task, err := data.NewTask(r.TaskSpec())
		if err != nil {
			return nil, fmt.Errorf("data.task: %w", err)
		}
		n := r.Data.Task.Examples
		if n <= 0 {
			n = defaultTaskExamples
		}
		d.task, d.bpe, d.tok = task, task.Tokenizer(), task.Tokenizer()
		if err := r.sameTokenizerAsBase(d.bpe); err != nil {
			return nil, err
		}
		d.train = task.Train(n)
		d.valid = task.EvalExamples()
		return d, nil
	}
	trainSrc, validSrc, _ := r.Sources()
	switch {
	case r.Model.From != "": // a fine-tune reads the data as its base model did
		bpe, err := r.baseTokenizer()
		if err != nil {
			return nil, err
		}
		d.bpe = bpe
	case r.Data.Tokenizer == "byte":
		d.bpe = data.NewByteTokenizer()
	case r.Data.Tokenizer == "bpe":
		var texts []string
		if _, err := trainSrc.Each(func(doc data.Document) error {
			texts = append(texts, doc.String())
			return nil
		}); err != nil {
			return nil, fmt.Errorf("data.train: %w", err)
		}
		bpe, err := data.TrainBPE(texts, r.Data.BPEVocabSize, data.BPEOptions{})
		if err != nil {
			return nil, fmt.Errorf("data.tokenizer: training BPE: %w", err)
		}
		d.bpe = bpe
	default:
		bpe, err := data.LoadTokenizer(r.Data.Tokenizer)
		if err != nil {
			return nil, fmt.Errorf("data.tokenizer: %w", err)
		}
		d.bpe = bpe
	}
	d.tok = d.bpe
	train, _, err := trainSrc.Load(d.tok)
	if err != nil {
		return nil, fmt.Errorf("data.train: %w", err)
	}
	if len(train) == 0 {
		return nil, fmt.Errorf("data.train: no examples in %v", r.Data.Train)
	}
	if len(validSrc.Paths) > 0 {
		if d.valid, _, err = validSrc.Load(d.tok); err != nil {
			return nil, fmt.Errorf("data.valid: %w", err)
		}
	}
	if r.Data.ValidSplit > 0 || r.Data.TestSplit > 0 {
		tr, va, _, err := data.SplitSeeded(train, r.Data.ValidSplit, r.Data.TestSplit, r.Train.Seed)
		if err != nil {
			return nil, fmt.Errorf("data.valid_split: %w", err)
		}
		train = tr
		if len(validSrc.Paths) == 0 {
			d.valid = va
		}
	}
	d.train = train
	return d, nil
}
