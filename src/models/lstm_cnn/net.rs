//! The network: layers initialised as Keras initialises them, its forward pass in training
//! and inference, and [`Folded`], the same network with its batch norms folded into the
//! layers around them for inference.

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::Params;

/// Keras' BatchNormalization epsilon.
const BN_EPS: f64 = 1e-3;

/// Keras' BatchNormalization, in libtorch's terms.
fn batch_norm(vs: nn::Path, n: i64) -> nn::BatchNorm {
    nn::batch_norm1d(vs, n, nn::BatchNormConfig { momentum: 0.01, eps: BN_EPS, ..Default::default() })
}

/// One LSTM layer on tch's weights, called with the real training flag: tch's own LSTM fixes
/// it at construction (to `true`), which makes inference keep the training workspace and run
/// slower.
#[derive(Debug)]
struct Lstm {
    weights: Vec<Tensor>,
    hidden: i64,
}

impl Lstm {
    /// With Keras' initialisation (see the module's docs). libtorch's gates are ordered
    /// input, forget, cell, output, and it adds two biases where Keras has one: the forget
    /// gate's input bias is 1, every other bias 0.
    fn new(vs: nn::Path, input: i64, hidden: i64) -> Lstm {
        let _ = nn::lstm(&vs, input, hidden, nn::RNNConfig { batch_first: true, ..Default::default() });
        let mut weights: Vec<Tensor> =
            ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"].iter().map(|n| vs.get(n).expect("nn::lstm registers its weights")).collect();
        tch::no_grad(|| {
            weights[0].init(glorot(input, 4 * hidden));
            weights[1].init(nn::Init::Orthogonal { gain: 1.0 });
            let _ = weights[2].fill_(0.0);
            let _ = weights[2].narrow(0, hidden, hidden).fill_(1.0);
            let _ = weights[3].fill_(0.0);
        });
        Lstm { weights, hidden }
    }

    fn run(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        run_lstm(xs, &self.weights, self.hidden, train)
    }
}

/// One batch-first LSTM layer from zero state: `[batch, steps, in]` → (all steps
/// `[batch, steps, hidden]`, last hidden `[batch, hidden]`).
fn run_lstm(xs: &Tensor, weights: &[Tensor], hidden: i64, train: bool) -> (Tensor, Tensor) {
    let zeros = Tensor::zeros([1, xs.size()[0], hidden], (xs.kind(), xs.device()));
    let w: Vec<&Tensor> = weights.iter().collect();
    let (out, h, _) = xs.lstm(&[&zeros, &zeros], &w, true, 1, 0.0, train, false, true);
    (out, h.squeeze_dim(0))
}

/// Keras' `glorot_uniform`: U(±√(6 / (fan_in + fan_out))).
fn glorot(fan_in: i64, fan_out: i64) -> nn::Init {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform { lo: -limit, up: limit }
}

/// A Keras `Conv1D(padding='same')`: Glorot-uniform kernel (fans count the kernel's width), zero bias.
fn conv1d(vs: nn::Path, input: i64, output: i64, p: &Params) -> nn::Conv1D {
    let k = p.kernel_size;
    let config = nn::ConvConfig { padding: p.padding(), ws_init: glorot(input * k, output * k), bs_init: nn::Init::Const(0.0), ..Default::default() };
    nn::conv1d(vs, input, output, k, config)
}

/// A Keras `Dense`: Glorot-uniform kernel, zero bias.
fn dense(vs: nn::Path, input: i64, output: i64) -> nn::Linear {
    nn::linear(vs, input, output, nn::LinearConfig { ws_init: glorot(input, output), bs_init: Some(nn::Init::Const(0.0)), bias: true })
}

#[derive(Debug)]
pub(super) struct Net {
    conv1: nn::Conv1D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv1D,
    bn2: nn::BatchNorm,
    lstm1: Lstm,
    bn3: nn::BatchNorm,
    lstm2: Lstm,
    bn4: nn::BatchNorm,
    fc1: nn::Linear,
    bn5: nn::BatchNorm,
    fc2: nn::Linear,
    out: nn::Linear,
    dropout: f64,
    final_dropout: f64,
}

impl Net {
    pub(super) fn new(vs: &nn::Path, n_features: i64, p: &Params) -> Net {
        let [c1, c2] = p.conv_filters;
        let [l1, l2] = p.lstm_units;
        let [d1, d2] = p.dense_units;
        Net {
            conv1: conv1d(vs / "conv1", n_features, c1, p),
            bn1: batch_norm(vs / "bn1", c1),
            conv2: conv1d(vs / "conv2", c1, c2, p),
            bn2: batch_norm(vs / "bn2", c2),
            lstm1: Lstm::new(vs / "lstm1", n_features, l1),
            bn3: batch_norm(vs / "bn3", l1),
            lstm2: Lstm::new(vs / "lstm2", l1, l2),
            bn4: batch_norm(vs / "bn4", l2),
            fc1: dense(vs / "fc1", c2 * p.pooled_len() + l2, d1),
            bn5: batch_norm(vs / "bn5", d1),
            fc2: dense(vs / "fc2", d1, d2),
            out: dense(vs / "out", d2, 1),
            dropout: p.dropout,
            final_dropout: p.final_dropout,
        }
    }
}

/// Dropout that is not even called in inference (each libtorch call costs a little, and a
/// single decision makes dozens).
#[derive(Debug)]
struct Dropout(f64);

impl ModuleT for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train && self.0 > 0.0 { xs.dropout(self.0, true) } else { xs.shallow_clone() }
    }
}

impl Net {
    /// The convolutional branch: `[batch, steps, features]` → `[batch, filters × steps / 2]`.
    /// Convolutions run over time with features as channels.
    fn cnn(&self, xs: &Tensor, train: bool) -> Tensor {
        let p = self.dropout;
        xs.transpose(1, 2)
            .apply(&self.conv1)
            .relu()
            .apply_t(&self.bn1, train)
            .apply_t(&Dropout(p), train)
            .apply(&self.conv2)
            .relu()
            .apply_t(&self.bn2, train)
            .max_pool1d(2, 2, 0, 1, false)
            .apply_t(&Dropout(p), train)
            .flatten(1, -1)
    }
}

impl ModuleT for Net {
    /// `[batch, steps, features]` → `[batch]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let p = self.dropout;
        let cnn = self.cnn(xs, train);
        let (all_steps, _) = self.lstm1.run(xs, train);
        // BatchNorm1d normalises dim 1; the LSTM's units are dim 2.
        let h = all_steps.transpose(1, 2).apply_t(&self.bn3, train).transpose(1, 2).apply_t(&Dropout(p), train);
        let (_, last) = self.lstm2.run(&h, train);
        let rnn = last.apply_t(&self.bn4, train).apply_t(&Dropout(p), train);
        Tensor::cat(&[cnn, rnn], 1)
            .apply(&self.fc1)
            .relu()
            .apply_t(&self.bn5, train)
            .apply_t(&Dropout(p), train)
            .apply(&self.fc2)
            .relu()
            .apply_t(&Dropout(self.final_dropout), train)
            .apply(&self.out)
            .squeeze_dim(1)
    }
}

/// The network for inference, with every BatchNorm that can be folded into the layer after it
/// folded in (`a·x + b` in eval mode is a per-channel affine map): the same outputs up to float
/// rounding, with fewer libtorch calls per decision. Built once from the trained weights.
pub(super) struct Folded {
    conv1: (Tensor, Tensor),
    padding: i64,
    /// The weights scaled by bn1, and a bias per output channel *and step* `[1, filters, steps]`:
    /// bn1's shift reaches the edge steps through fewer taps, since the padding is zeros
    /// after the batch norm, not its shifted zeros.
    conv2: (Tensor, Tensor),
    /// bn2 sits before the max-pool, which commutes with it only where its scale is positive.
    bn2: Option<(Tensor, Tensor)>,
    lstm1: Vec<Tensor>,
    lstm2: Vec<Tensor>,
    hidden: (i64, i64),
    fc1: (Tensor, Tensor),
    fc2: (Tensor, Tensor),
    out: (Tensor, Tensor),
}

/// A BatchNorm in eval mode as `(scale, shift)`.
fn affine(bn: &nn::BatchNorm) -> (Tensor, Tensor) {
    let ws = bn.ws.as_ref().expect("affine batch norm");
    let bs = bn.bs.as_ref().expect("affine batch norm");
    let a = ws / (&bn.running_var + BN_EPS).sqrt();
    let b = bs - &bn.running_mean * &a;
    (a, b)
}

fn bias(t: &Option<Tensor>) -> Tensor {
    t.as_ref().expect("layers have biases").copy()
}

impl Folded {
    pub(super) fn new(net: &Net, p: &Params) -> Folded {
        tch::no_grad(|| {
            let (a1, b1) = affine(&net.bn1);
            let (a2, b2) = affine(&net.bn2);
            let (a3, b3) = affine(&net.bn3);
            let (a4, b4) = affine(&net.bn4);
            let (a5, b5) = affine(&net.bn5);
            // bn1 → conv2: scale the input channels; the shift, convolved with the same padding,
            // is the bias at each step.
            let w2 = &net.conv2.ws * a1.view([1, -1, 1]);
            let shift = b1.view([1, -1, 1]).expand([1, p.conv_filters[0], p.sequence_length as i64], false);
            let c2 = shift.conv1d(&net.conv2.ws, net.conv2.bs.as_ref(), [1], [p.padding()], [1], 1);
            // bn3 → lstm2's input weights.
            let mut lstm2: Vec<Tensor> = net.lstm2.weights.iter().map(|w| w.copy()).collect();
            lstm2[2] = &lstm2[2] + net.lstm2.weights[0].matmul(&b3);
            lstm2[0] = &net.lstm2.weights[0] * a3.view([1, -1]);
            // fc1 reads [cnn (channels × pooled steps, channel-major) | rnn]; bn4 → the rnn columns,
            // bn2 → the cnn columns when the max-pool lets it through.
            let pooled = p.pooled_len();
            let fold_bn2 = a2.min().double_value(&[]) > 0.0;
            let ones_cnn = Tensor::ones([p.conv_filters[1] * pooled], (Kind::Float, a2.device()));
            let zeros_cnn = Tensor::zeros([p.conv_filters[1] * pooled], (Kind::Float, a2.device()));
            let (scale_cnn, shift_cnn) =
                if fold_bn2 { (a2.repeat_interleave_self_int(pooled, 0, None), b2.repeat_interleave_self_int(pooled, 0, None)) } else { (ones_cnn, zeros_cnn) };
            let scale = Tensor::cat(&[scale_cnn, a4], 0);
            let shift = Tensor::cat(&[shift_cnn, b4], 0);
            let w1 = &net.fc1.ws * scale.view([1, -1]);
            let c1 = bias(&net.fc1.bs) + net.fc1.ws.matmul(&shift);
            // bn5 → fc2.
            let wf2 = &net.fc2.ws * a5.view([1, -1]);
            let cf2 = bias(&net.fc2.bs) + net.fc2.ws.matmul(&b5);
            Folded {
                conv1: (net.conv1.ws.copy(), bias(&net.conv1.bs)),
                padding: p.padding(),
                conv2: (w2, c2),
                bn2: if fold_bn2 { None } else { Some((a2.view([1, -1, 1]), b2.view([1, -1, 1]))) },
                lstm1: net.lstm1.weights.iter().map(|w| w.copy()).collect(),
                lstm2,
                hidden: (net.lstm1.hidden, net.lstm2.hidden),
                fc1: (w1, c1),
                fc2: (wf2, cf2),
                out: (net.out.ws.copy(), bias(&net.out.bs)),
            }
        })
    }

    /// `[batch, steps, features]` → `[batch]`, in inference mode.
    pub(super) fn forward(&self, xs: &Tensor) -> Tensor {
        let mut cnn = xs
            .transpose(1, 2)
            .conv1d(&self.conv1.0, Some(&self.conv1.1), [1], [self.padding], [1], 1)
            .relu()
            .conv1d(&self.conv2.0, None::<&Tensor>, [1], [self.padding], [1], 1)
            .g_add(&self.conv2.1)
            .relu();
        if let Some((a, b)) = &self.bn2 {
            cnn = cnn * a + b;
        }
        let cnn = cnn.max_pool1d(2, 2, 0, 1, false).flatten(1, -1);
        let (all, _) = run_lstm(xs, &self.lstm1, self.hidden.0, false);
        let (_, last) = run_lstm(&all, &self.lstm2, self.hidden.1, false);
        Tensor::cat(&[cnn, last], 1)
            .linear(&self.fc1.0, Some(&self.fc1.1))
            .relu()
            .linear(&self.fc2.0, Some(&self.fc2.1))
            .relu()
            .linear(&self.out.0, Some(&self.out.1))
            .squeeze_dim(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn randomise_batch_norms(vs: &nn::VarStore) {
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                let shape = v.size();
                let r = match name.rsplit('.').next() {
                    Some("running_mean") | Some("bias") if name.starts_with("bn") => Tensor::randn(&shape, (Kind::Float, Device::Cpu)),
                    Some("running_var") | Some("weight") if name.starts_with("bn") => Tensor::rand(&shape, (Kind::Float, Device::Cpu)) + 0.5,
                    _ => continue,
                };
                v.copy_(&r);
            }
        });
    }

    #[test]
    fn both_convolutions_pad_same_as_the_old_network() {
        let p = Params::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 5, &p);
        let x = Tensor::randn([3, 12, 5], (Kind::Float, Device::Cpu));
        // 128 filters × 12 steps kept by `same` padding, pooled by 2: 768 (640 unpadded).
        assert_eq!(tch::no_grad(|| net.cnn(&x, false)).size(), [3, 768]);
        assert_eq!(net.fc1.ws.size(), [64, 768 + 64]);
        assert_eq!(Params { kernel_size: 4, ..Params::default() }.check().unwrap_err().0, "kernel_size");
    }

    #[test]
    fn weights_start_as_keras_starts_them() {
        tch::manual_seed(3);
        let p = Params::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 5, &p);
        let max = |t: &Tensor| t.abs().max().double_value(&[]);
        // Glorot-uniform: bounded by √(6 / (fan_in + fan_out)), and reaching close to it.
        for (w, limit) in [
            (&net.conv1.ws, (6.0 / (5.0 * 3.0 + 64.0 * 3.0f64)).sqrt()),
            (&net.conv2.ws, (6.0 / (64.0 * 3.0 + 128.0 * 3.0f64)).sqrt()),
            (&net.fc1.ws, (6.0 / (832.0 + 64.0f64)).sqrt()),
            (&net.lstm1.weights[0], (6.0 / (5.0 + 512.0f64)).sqrt()),
        ] {
            assert!(max(w) <= limit && max(w) > 0.9 * limit, "max {} for limit {limit}", max(w));
        }
        for b in [&net.conv1.bs, &net.conv2.bs, &net.fc1.bs, &net.fc2.bs, &net.out.bs] {
            assert_eq!(max(b.as_ref().unwrap()), 0.0);
        }
        // Orthogonal recurrent weights: [4h, h] with orthonormal columns.
        let whh = &net.lstm1.weights[1];
        let gram = whh.transpose(0, 1).matmul(whh);
        assert!(max(&(gram - Tensor::eye(128, (Kind::Float, Device::Cpu)))) < 1e-4);
        // Gates i, f, g, o: only the forget gate's bias is 1.
        let bias: Vec<f32> = Vec::try_from(&net.lstm2.weights[2] + &net.lstm2.weights[3]).unwrap();
        let expected: Vec<f32> = (0..256).map(|i| if (64..128).contains(&i) { 1.0 } else { 0.0 }).collect();
        assert_eq!(bias, expected);
    }

    #[test]
    fn the_folded_network_computes_what_the_trained_one_does() {
        tch::manual_seed(7);
        let p = Params::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 5, &p);
        randomise_batch_norms(&vs);
        let x = Tensor::randn([9, p.sequence_length as i64, 5], (Kind::Float, Device::Cpu));
        let max_diff = |f: &Folded| tch::no_grad(|| (net.forward_t(&x, false) - f.forward(&x)).abs().max().double_value(&[]));
        let folded = Folded::new(&net, &p);
        assert!(folded.bn2.is_none(), "positive scales fold through the max-pool");
        assert!(max_diff(&folded) < 1e-4, "folded differs by {}", max_diff(&folded));
        // A negative scale does not commute with the max-pool: that batch norm stays.
        tch::no_grad(|| {
            let w = (vs.root() / "bn2").get("weight").unwrap();
            let _ = w.get(0).fill_(-0.7);
        });
        let folded = Folded::new(&net, &p);
        assert!(folded.bn2.is_some());
        assert!(max_diff(&folded) < 1e-4, "folded differs by {}", max_diff(&folded));
    }
}
