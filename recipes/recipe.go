package recipes

// A Recipe says everything needed to reproduce a training run: the model, the
// data, how long and how to train, the optimizer and its schedule. Each
// section is a TOML table of the same name; each field's toml tag is its key.
//
// Fill one from Go (start from Defaults, which Validate accepts once a data
// source is set) or from TOML (Load, Parse). Validate checks every range and
// every consistency rule either way. Zero values do not mean "default": a
// field is what it says, except where its comment gives 0 or "" a meaning.
type Recipe struct {
	Model      ModelConfig     `toml:"model"`
	Data       DataConfig      `toml:"data"`
	Train      TrainConfig     `toml:"train"`
	Optimizer  OptimizerConfig `toml:"optimizer"`
	LRSchedule ScheduleConfig  `toml:"lr_schedule"`
	LoRA       LoRAConfig      `toml:"lora"`
	Eval       EvalConfig      `toml:"eval"`

	// file names the TOML the recipe came from, and origin records where each
	// key's value was given ("recipe.toml:12", "--set train.iters=5"), so that
	// Validate can point at it. Neither is part of the recipe's value.
	file   string
	origin map[string]origin
}

// origin is where a key's value was given: a source (file name or "--set k=v")
// and, in a file, its 1-based line.
type origin struct {
	source   string
	line     int
	override bool // given by Set
}

// ModelConfig is the [model] section: a decoder-only language model.
//
// The layer pattern gives each layer a mixer and a feed-forward. Its entries
// are "mixer" or "mixer:ffn" with mixer attention or ssm and ffn dense or moe
// (dense when left out); the pattern repeats to cover Layers, whose count it
// must divide. ["attention"] is a plain transformer; ["ssm", "attention:moe"]
// with 8 layers alternates SSM layers with attention layers whose feed-forward
// is a mixture of experts.
type ModelConfig struct {
	// Family is the architecture preset: "gpt" (GELU MLP, LayerNorm, learned
	// positions, biases, tied embeddings) or "llama" (SwiGLU, RMSNorm, RoPE, no
	// biases, separate output head). Giving a family in a file or with Set
	// assigns the preset's ffn, ffn_mult, norm, norm_eps, positions,
	// rope_theta, bias and tie_embeddings first; keys given beside it win. From
	// Go, SetFamily does the same.
	Family string `toml:"family"`
	// From is a checkpoint directory whose weights start the run (a
	// fine-tune); "" trains from a random initialization. The architecture
	// keys must match its config.json, and its tokenizer.json replaces
	// data.tokenizer. Like train.out it is a run's directory, relative to the
	// working directory.
	From string `toml:"from"`
	// VocabSize is the embedding's row count; 0 takes the tokenizer's size.
	VocabSize int `toml:"vocab_size"`
	// DModel is the residual stream's width.
	DModel int `toml:"d_model"`
	// Layers is the number of blocks.
	Layers int `toml:"layers"`
	// Heads is the number of query heads; KVHeads the number of key/value heads
	// (grouped-query attention; 0 means Heads). KVHeads must divide Heads.
	Heads   int `toml:"heads"`
	KVHeads int `toml:"kv_heads"`
	// HeadDim is each head's width; 0 means DModel/Heads (Heads must divide DModel).
	HeadDim int `toml:"head_dim"`
	// FFN is the feed-forward's kind: "gelu", "gelu_tanh", "relu" (two
	// matrices) or "swiglu" (gated, three matrices).
	FFN string `toml:"ffn"`
	// FFNWidth is the feed-forward's hidden width; 0 means FFNMult·DModel
	// rounded up to a multiple of 8 (see FFNHidden).
	FFNWidth int     `toml:"ffn_width"`
	FFNMult  float64 `toml:"ffn_mult"`
	// Norm is "layernorm" or "rmsnorm", with epsilon NormEps.
	Norm    string  `toml:"norm"`
	NormEps float64 `toml:"norm_eps"`
	// Positions is "learned" (a position embedding table), "rope" (rotary, base
	// RopeTheta; RopeInterleaved rotates adjacent pairs as GPT-J does instead of
	// the two halves as Llama does) or "none".
	Positions       string  `toml:"positions"`
	RopeTheta       float64 `toml:"rope_theta"`
	RopeInterleaved bool    `toml:"rope_interleaved"`
	// MaxPositions is the longest sequence the model is built for (the learned
	// table's size); 0 means train.max_seq_length.
	MaxPositions int `toml:"max_positions"`
	// Window limits attention to the last Window positions (sliding window); 0
	// attends to all earlier positions.
	Window int `toml:"window"`
	// Bias gives the linear layers biases; TieEmbeddings shares the input
	// embedding with the output head.
	Bias          bool `toml:"bias"`
	TieEmbeddings bool `toml:"tie_embeddings"`
	// Dropout is the dropout rate of the embedding output and the residual
	// branches (each mixer's and feed-forward's output).
	Dropout float64 `toml:"dropout"`
	// InitStd is the standard deviation of the initial weights.
	InitStd float64 `toml:"init_std"`
	// Init is how the weights start: "normal" (GPT-2: N(0, init_std²), residual
	// projections scaled by 1/√(2·layers)) or "pytorch" (torch.nn's defaults:
	// linear weights uniform in ±1/√fan_in, embeddings N(0, 1); init_std unused).
	Init string `toml:"init"`
	// LayerPattern gives each layer its mixer and feed-forward (see above).
	LayerPattern []string `toml:"layer_pattern"`
	// DType is the parameters' dtype; "float32" for now.
	DType string `toml:"dtype"`
	// SSM and MoE configure the ssm mixers and moe feed-forwards that the
	// layer pattern asks for; they are validated even when it asks for none.
	SSM SSMConfig `toml:"ssm"`
	MoE MoEConfig `toml:"moe"`
}

// SSMConfig is [model.ssm]: the selective state-space (Mamba) mixer.
type SSMConfig struct {
	// DState is the state size per channel, DConv the causal convolution's
	// width, Expand the inner width as a multiple of d_model, DTRank the rank
	// of the step-size projection (0 means ceil(d_model/16), as Mamba's "auto").
	DState int `toml:"d_state"`
	DConv  int `toml:"d_conv"`
	Expand int `toml:"expand"`
	DTRank int `toml:"dt_rank"`
}

// MoEConfig is [model.moe]: the mixture-of-experts feed-forward.
type MoEConfig struct {
	// Experts is the number of routed experts, TopK how many each token uses,
	// SharedExperts how many every token uses besides them.
	Experts       int `toml:"experts"`
	TopK          int `toml:"top_k"`
	SharedExperts int `toml:"shared_experts"`
	// CapacityFactor bounds each expert's tokens per batch to
	// CapacityFactor·tokens·top_k/experts (the rest skip the layer); 0 means no
	// bound (dropless).
	CapacityFactor float64 `toml:"capacity_factor"`
	// Router is "softmax" or "sigmoid" gating.
	Router string `toml:"router"`
	// AuxLossCoef weighs the load-balancing loss and ZLossCoef the router
	// z-loss (0 turns either off).
	AuxLossCoef float64 `toml:"aux_loss_coef"`
	ZLossCoef   float64 `toml:"z_loss_coef"`
}

// DataConfig is the [data] section: a built-in synthetic task or files.
//
// File lists take paths or globs (a single string is a list of one). A
// relative data path (train, valid, test, a tokenizer file) in a recipe file
// is relative to that file's directory, as the data ships with the recipe;
// one given to Set is relative to the working directory. Both make it
// absolute, so that the effective recipe (saved in every checkpoint) names
// the same files from anywhere. Paths filled in from Go are used as they are.
type DataConfig struct {
	// Task is a built-in synthetic task; Task.Kind "" means train from files.
	Task TaskConfig `toml:"task"`
	// Train, Valid and Test are the files of each split. Without Valid (or
	// Test) files, ValidSplit (TestSplit) of the training documents are set
	// aside instead, by a split seeded with train.seed.
	Train []string `toml:"train" recipe:"path"`
	Valid []string `toml:"valid" recipe:"path"`
	Test  []string `toml:"test" recipe:"path"`
	// Format is the JSONL/Parquet records' shape: "text", "completions"
	// (loss on the completion only), "chat" (loss on the assistant turns) or
	// "auto" (per file, from the first record's fields). Plain text files
	// are one text document each.
	Format string `toml:"format"`
	// The record fields (Parquet columns) each format reads.
	TextField       string `toml:"text_field"`
	PromptField     string `toml:"prompt_field"`
	CompletionField string `toml:"completion_field"`
	MessagesField   string `toml:"messages_field"`
	// ValidSplit and TestSplit are fractions of the training documents, each
	// in [0, 1), their sum below 1.
	ValidSplit float64 `toml:"valid_split"`
	TestSplit  float64 `toml:"test_split"`
	// Tokenizer is "byte" (256 bytes and 3 specials), "bpe" (a byte-level BPE
	// of BPEVocabSize ids trained on the training split) or the path of a
	// Hugging Face tokenizer.json (ending in .json).
	Tokenizer    string `toml:"tokenizer" recipe:"path"`
	BPEVocabSize int    `toml:"bpe_vocab_size"`
	// Pack concatenates examples, separated by EOS, into rows of
	// train.max_seq_length; false gives each example a row of its own, cut
	// or padded to that length.
	Pack bool `toml:"pack"`
}

// TaskConfig is [data.task]: a built-in synthetic task (see data.TaskSpec).
// Each kind reads only its own options; all are validated.
type TaskConfig struct {
	// Kind is one of data.TaskKinds: "addition", "copy", "reverse", "sort",
	// "mqar"; "" for none.
	Kind string `toml:"kind"`
	// MaxDigits bounds the addition operands' digits (1 to 18).
	MaxDigits int `toml:"max_digits"`
	// MinLen and MaxLen bound the sequence length of copy, reverse and sort.
	MinLen int `toml:"min_len"`
	MaxLen int `toml:"max_len"`
	// Alphabet holds the symbols of copy, reverse and sort and the keys of
	// mqar; Values the values of mqar. "" means the task's default
	// ("0123456789" for the sequence tasks, "a" to "z" for mqar keys,
	// "0123456789" for its values). Symbols are distinct ASCII other than
	// = | +.
	Alphabet string `toml:"alphabet"`
	Values   string `toml:"values"`
	// Pairs and Queries size mqar: key-value pairs per example and queries
	// among them.
	Pairs   int `toml:"pairs"`
	Queries int `toml:"queries"`
	// HeldOut is the number of held-out problems, never trained on, that
	// accuracy is measured on.
	HeldOut int `toml:"held_out"`
	// Examples is the number of distinct training examples; 0 draws a fresh
	// one for every row the run trains on.
	Examples int `toml:"examples"`
}

// TrainConfig is the [train] section, with mlx-lm's key names.
type TrainConfig struct {
	// Iters is the number of optimizer steps; Epochs, when above 0, replaces
	// it with that many passes over the training data.
	Iters  int `toml:"iters"`
	Epochs int `toml:"epochs"`
	// BatchSize rows of MaxSeqLength tokens make a micro-batch;
	// GradAccumulationSteps micro-batches make a step.
	BatchSize             int `toml:"batch_size"`
	MaxSeqLength          int `toml:"max_seq_length"`
	GradAccumulationSteps int `toml:"grad_accumulation_steps"`
	// Seed decides the initial weights, the data order and splits, the
	// synthetic task's problems and dropout.
	Seed uint64 `toml:"seed"`
	// StepsPerReport is the logging period; StepsPerEval the evaluation
	// period (0: never), each evaluation reading ValBatches batches of the
	// validation set (-1: all of it).
	StepsPerReport int `toml:"steps_per_report"`
	StepsPerEval   int `toml:"steps_per_eval"`
	ValBatches     int `toml:"val_batches"`
	// SaveEvery is the checkpoint period (0: at the end only); Keep the number
	// of recent checkpoints kept besides the best (0: all).
	SaveEvery int `toml:"save_every"`
	Keep      int `toml:"keep"`
	// GradCheckpoint recomputes each block's forward during backward,
	// trading time for activation memory.
	GradCheckpoint bool `toml:"grad_checkpoint"`
	// Precision is the activations' precision: "f32", "bf16", "f16" (with
	// loss scaling) or "auto" (half only where length and magnitude allow);
	// master weights and accumulation stay float32.
	Precision string `toml:"precision"`
	// MaxGradNorm clips the global gradient norm; 0 turns clipping off.
	MaxGradNorm float64 `toml:"max_grad_norm"`
	// Out is the run directory.
	Out string `toml:"out"`
	// FineTuneType is "full" (train every weight) or "lora" (train the
	// [lora] adapters of a model loaded with model.from).
	FineTuneType string `toml:"fine_tune_type"`
}

// OptimizerConfig is the [optimizer] section.
type OptimizerConfig struct {
	// Name is "adamw", "adam", "sgd" or "lion".
	Name string `toml:"name"`
	// LearningRate is the peak rate (after warmup).
	LearningRate float64 `toml:"learning_rate"`
	// Betas are Adam's moment decay rates and Lion's interpolation and
	// momentum rates (Lion's paper uses [0.9, 0.99]).
	Betas [2]float64 `toml:"betas"`
	// Eps is Adam's denominator epsilon.
	Eps float64 `toml:"eps"`
	// WeightDecay: decoupled for adamw and lion, coupled (L2) for adam and sgd.
	// Biases, norms, embeddings and vectors are not decayed.
	WeightDecay float64 `toml:"weight_decay"`
	// Momentum, Dampening and Nesterov are SGD's.
	Momentum  float64 `toml:"momentum"`
	Dampening float64 `toml:"dampening"`
	Nesterov  bool    `toml:"nesterov"`
}

// ScheduleConfig is the [lr_schedule] section: a linear warmup from
// WarmupInit to optimizer.learning_rate over Warmup steps, then the schedule
// Name from optimizer.learning_rate:
//
//   - "constant": stays there;
//   - "cosine": half a cosine down to FinalLR over DecaySteps, then FinalLR;
//   - "linear": a straight line down to FinalLR over DecaySteps, then FinalLR;
//   - "step": multiplied by Gamma every StepSize steps.
//
// DecaySteps 0 means the rest of the run.
type ScheduleConfig struct {
	Name       string  `toml:"name"`
	Warmup     int     `toml:"warmup"`
	WarmupInit float64 `toml:"warmup_init"`
	FinalLR    float64 `toml:"final_lr"`
	DecaySteps int     `toml:"decay_steps"`
	Gamma      float64 `toml:"gamma"`
	StepSize   int     `toml:"step_size"`
}

// LoRAConfig is the [lora] section, used when train.fine_tune_type is "lora":
// low-rank adapters on the linear layers whose parameter paths end in one of
// Keys, in the last NumLayers blocks (-1: all).
type LoRAConfig struct {
	// Rank is the adapters' rank; Scale multiplies their output; Dropout is
	// applied to their input.
	Rank    int     `toml:"rank"`
	Scale   float64 `toml:"scale"`
	Dropout float64 `toml:"dropout"`
	// Keys are linear layers' path suffixes, such as "self_attn.q_proj".
	Keys      []string `toml:"keys"`
	NumLayers int      `toml:"num_layers"`
}

// EvalConfig is the [eval] section: what each evaluation does besides the
// validation loss.
type EvalConfig struct {
	// Problems is how many of a synthetic task's held-out problems the
	// exact-match accuracy is measured on (0: all of them).
	Problems int `toml:"problems"`
	// SampleTokens, when above 0, greedily continues SamplePrompt by that
	// many tokens at each evaluation and logs the text.
	SamplePrompt string `toml:"sample_prompt"`
	SampleTokens int    `toml:"sample_tokens"`
}

// Defaults returns the recipe every TOML file starts from: a small GPT, AdamW
// at a constant rate, byte tokens. It has no data source, so Validate rejects
// it until Data.Task.Kind or Data.Train is set.
func Defaults() *Recipe {
	r := &Recipe{
		Model: ModelConfig{
			DModel:       256,
			Layers:       4,
			Heads:        4,
			MaxPositions: 0,
			InitStd:      0.02,
			Init:         "normal",
			LayerPattern: []string{"attention:dense"},
			DType:        "float32",
			SSM:          SSMConfig{DState: 16, DConv: 4, Expand: 2},
			MoE: MoEConfig{Experts: 8, TopK: 2, CapacityFactor: 1.25, Router: "softmax",
				AuxLossCoef: 0.01, ZLossCoef: 0.001},
		},
		Data: DataConfig{
			Task: TaskConfig{MaxDigits: 3, MinLen: 1, MaxLen: 8, Pairs: 8, Queries: 4,
				HeldOut: 500},
			Train: []string{}, Valid: []string{}, Test: []string{},
			Format:    "auto",
			TextField: "text", PromptField: "prompt", CompletionField: "completion",
			MessagesField: "messages",
			Tokenizer:     "byte",
			BPEVocabSize:  1024,
			Pack:          true,
		},
		Train: TrainConfig{
			Iters:                 1000,
			BatchSize:             16,
			MaxSeqLength:          256,
			GradAccumulationSteps: 1,
			StepsPerReport:        10,
			StepsPerEval:          200,
			ValBatches:            25,
			SaveEvery:             100,
			Keep:                  3,
			Precision:             "f32",
			MaxGradNorm:           1,
			Out:                   "run",
			FineTuneType:          "full",
		},
		Optimizer: OptimizerConfig{
			Name:         "adamw",
			LearningRate: 1e-3,
			Betas:        [2]float64{0.9, 0.999},
			Eps:          1e-8,
			WeightDecay:  0.01,
		},
		LRSchedule: ScheduleConfig{Name: "constant", Gamma: 0.1, StepSize: 1000},
		LoRA: LoRAConfig{Rank: 8, Scale: 20, Keys: []string{"self_attn.q_proj", "self_attn.v_proj"},
			NumLayers: -1},
	}
	if err := r.Model.SetFamily("gpt"); err != nil {
		panic(err) // the preset table is ours
	}
	return r
}

// families are the model presets (see ModelConfig.Family).
var families = map[string]func(m *ModelConfig){
	"gpt": func(m *ModelConfig) {
		m.FFN, m.FFNMult = "gelu", 4
		m.Norm, m.NormEps = "layernorm", 1e-5
		m.Positions, m.RopeTheta = "learned", 10000
		m.Bias, m.TieEmbeddings = true, true
	},
	"llama": func(m *ModelConfig) {
		m.FFN, m.FFNMult = "swiglu", 8.0/3
		m.Norm, m.NormEps = "rmsnorm", 1e-5
		m.Positions, m.RopeTheta = "rope", 10000
		m.Bias, m.TieEmbeddings = false, false
	},
}

// Families lists the model presets.
func Families() []string { return sortedKeys(families) }

// SetFamily sets Family and assigns the preset's fields (see Family).
func (m *ModelConfig) SetFamily(name string) error {
	preset, ok := families[name]
	if !ok {
		return &Error{Key: "model.family", Msg: "model.family: " + choiceMsg(name, Families())}
	}
	m.Family = name
	preset(m)
	return nil
}
