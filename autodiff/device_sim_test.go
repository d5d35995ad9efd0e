package autodiff

// Linking the simulator lets MLXTRAIN_DEVICE=sim run this package's tests
// through the device kernels (MLXTRAIN_METAL_MIN=0: every op that has one).
import _ "github.com/mlxtrain/mlxtrain/metal/sim"
