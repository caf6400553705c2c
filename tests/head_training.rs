//! Training the head on the CPU reference backend: gradients, determinism, optimisers, early
//! stopping, class balancing, input checks and metrics.

mod common;

use common::blobs;
use graft::head::cpu::{self, CpuBackend, DropoutStep};
use graft::head::random::seed32;
use graft::head::{Examples, Head, HeadSpec, Optimizer};
use graft::metrics::Metrics;
use graft::train::{train, EpochRecord, TrainOptions, TrainReport};
use graft::Error;
use ndarray::{Array2, ArrayView2};

fn run(
    classes: usize,
    train_set: (&Array2<f32>, &[usize]),
    val_set: (&Array2<f32>, &[usize]),
    opts: &TrainOptions,
) -> graft::Result<(Head, TrainReport)> {
    train(
        classes,
        Examples::new(train_set.0.view(), train_set.1),
        Examples::new(val_set.0.view(), val_set.1),
        opts,
        &mut CpuBackend::new(),
        &mut |_: &EpochRecord| {},
    )
}

fn accuracy(head: &Head, x: &Array2<f32>, y: &[usize]) -> f64 {
    let p = head.predict(x.view()).unwrap();
    p.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
}

// ---------------------------------------------------------------- gradient check

/// The batch loss computed independently in f64: `sum_i w[y_i] * CE_i / B` with smoothed targets,
/// ReLU hidden layers and the given dropout.
fn loss_f64(
    weights: &[(Array2<f64>, Vec<f64>)],
    x: ArrayView2<f32>,
    y: &[usize],
    class_weights: &[f32],
    smoothing: f64,
    dropout: Option<&DropoutStep>,
) -> f64 {
    let rows = x.nrows();
    let mut total = 0.0;
    for i in 0..rows {
        let mut a: Vec<f64> = x.row(i).iter().map(|&v| f64::from(v)).collect();
        for (l, (w, b)) in weights.iter().enumerate() {
            let mut z: Vec<f64> = (0..w.ncols())
                .map(|j| b[j] + (0..w.nrows()).map(|k| a[k] * w[[k, j]]).sum::<f64>())
                .collect();
            if l + 1 < weights.len() {
                for (u, v) in z.iter_mut().enumerate() {
                    let f = dropout.map_or(1.0, |d| {
                        let site = graft::head::random::DropoutSite {
                            seed: d.seed,
                            epoch: d.epoch,
                            step: d.step,
                            layer: l as u32,
                            row: i as u32,
                            unit: u as u32,
                        };
                        f64::from(graft::head::random::dropout_factor(&site, d.rate))
                    });
                    *v = v.max(0.0) * f;
                }
            }
            a = z;
        }
        let classes = a.len();
        let max = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + a.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        let ce: f64 = (0..classes)
            .map(|c| {
                let t = smoothing / classes as f64 + if c == y[i] { 1.0 - smoothing } else { 0.0 };
                -t * (a[c] - lse)
            })
            .sum();
        total += f64::from(class_weights[y[i]]) * ce;
    }
    total / rows as f64
}

fn check_gradients(hidden: Vec<usize>, dropout: Option<DropoutStep>) {
    let (x, y) = blobs(1, 2, &[3, 4, 2], 6, 1.0);
    let spec = HeadSpec {
        input_dim: 6,
        hidden,
        classes: 3,
    };
    let mut head = Head::new(&spec, 5).unwrap();
    // Non-zero biases so that their gradients are exercised too.
    for (l, layer) in head.layers.iter_mut().enumerate() {
        layer
            .bias
            .iter_mut()
            .enumerate()
            .for_each(|(j, b)| *b = 0.1 * (j + l) as f32 - 0.25);
    }
    let class_weights = [0.5f32, 1.0, 2.0];
    let smoothing = 0.1f32;
    let pass = cpu::forward_backward(
        &head,
        x.view(),
        &y,
        &class_weights,
        smoothing,
        dropout.as_ref(),
    )
    .unwrap();
    let weights: Vec<(Array2<f64>, Vec<f64>)> = head
        .layers
        .iter()
        .map(|l| {
            (
                l.weight.mapv(f64::from),
                l.bias.iter().map(|&v| f64::from(v)).collect(),
            )
        })
        .collect();
    let reference = |w: &[(Array2<f64>, Vec<f64>)]| {
        loss_f64(
            w,
            x.view(),
            &y,
            &class_weights,
            f64::from(smoothing),
            dropout.as_ref(),
        )
    };
    let loss = pass.loss.weighted_sum / y.len() as f64;
    assert!((loss - reference(&weights)).abs() < 1e-5, "loss {loss}");

    let h = 1e-6;
    let close = |analytic: f32, numeric: f64, what: &str| {
        let a = f64::from(analytic);
        assert!(
            (a - numeric).abs() <= 1e-5 + 2e-3 * numeric.abs(),
            "{what}: analytic {a}, numeric {numeric}"
        );
    };
    let mut checked = 0;
    for l in 0..weights.len() {
        for ((k, j), &g) in pass.grads[l].weight.indexed_iter() {
            let mut plus = weights.clone();
            plus[l].0[[k, j]] += h;
            let mut minus = weights.clone();
            minus[l].0[[k, j]] -= h;
            close(
                g,
                (reference(&plus) - reference(&minus)) / (2.0 * h),
                &format!("W{l}[{k},{j}]"),
            );
            checked += 1;
        }
        for (j, &g) in pass.grads[l].bias.iter().enumerate() {
            let mut plus = weights.clone();
            plus[l].1[j] += h;
            let mut minus = weights.clone();
            minus[l].1[j] -= h;
            close(
                g,
                (reference(&plus) - reference(&minus)) / (2.0 * h),
                &format!("b{l}[{j}]"),
            );
            checked += 1;
        }
    }
    assert!(checked > 20);
}

#[test]
fn gradients_of_softmax_regression_match_finite_differences() {
    check_gradients(vec![], None);
}

#[test]
fn gradients_of_mlp_match_finite_differences() {
    check_gradients(vec![5], None);
    check_gradients(vec![5, 4], None);
}

#[test]
fn gradients_with_dropout_match_finite_differences() {
    let dropout = DropoutStep {
        seed: seed32(9),
        epoch: 2,
        step: 1,
        rate: 0.4,
    };
    check_gradients(vec![7, 4], Some(dropout));
}

// ---------------------------------------------------------------- determinism

fn weight_bits(head: &Head) -> Vec<u32> {
    head.layers
        .iter()
        .flat_map(|l| l.weight.iter().chain(l.bias.iter()).map(|v| v.to_bits()))
        .collect()
}

#[test]
fn same_seed_gives_identical_weights() {
    let (x, y) = blobs(3, 4, &[30, 30, 30], 16, 1.5);
    let (vx, vy) = blobs(3, 5, &[10, 10, 10], 16, 1.5);
    let opts = TrainOptions {
        epochs: 5,
        batch_size: 8,
        hidden: vec![12],
        dropout: 0.3,
        label_smoothing: 0.1,
        balance: true,
        ..TrainOptions::default()
    };
    let (a, ra) = run(3, (&x, &y), (&vx, &vy), &opts).unwrap();
    let (b, rb) = run(3, (&x, &y), (&vx, &vy), &opts).unwrap();
    assert_eq!(weight_bits(&a), weight_bits(&b));
    assert_eq!(ra.history, rb.history);
    let (c, _) = run(3, (&x, &y), (&vx, &vy), &TrainOptions { seed: 43, ..opts }).unwrap();
    assert_ne!(weight_bits(&a), weight_bits(&c));
    assert_eq!(ra.backend, "cpu (ndarray)");
}

#[test]
fn initialisation_is_glorot_uniform_and_seeded() {
    let spec = HeadSpec {
        input_dim: 100,
        hidden: vec![50],
        classes: 4,
    };
    let a = Head::new(&spec, 1).unwrap();
    assert_eq!(a.spec(), spec);
    assert_eq!(weight_bits(&a), weight_bits(&Head::new(&spec, 1).unwrap()));
    assert_ne!(weight_bits(&a), weight_bits(&Head::new(&spec, 2).unwrap()));
    let limit = (6.0f32 / 150.0).sqrt();
    let w = &a.layers[0].weight;
    assert!(w.iter().all(|v| v.abs() <= limit));
    // Uniform on [-limit, limit]: mean ~0, variance limit²/3.
    let n = w.len() as f32;
    let mean = w.sum() / n;
    let var = w.mapv(|v| v * v).sum() / n;
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!(
        (var / (limit * limit / 3.0) - 1.0).abs() < 0.05,
        "var {var}"
    );
    assert!(a.layers.iter().all(|l| l.bias.iter().all(|&b| b == 0.0)));
}

// ---------------------------------------------------------------- optimisers

#[test]
fn every_optimiser_separates_gaussian_blobs() {
    let counts = [60, 60, 60, 60];
    let (x, y) = blobs(11, 12, &counts, 32, 1.0);
    let (vx, vy) = blobs(11, 13, &[40, 40, 40, 40], 32, 1.0);
    let cases = [
        (Optimizer::sgd(), 1e-2, vec![]),
        (Optimizer::adam(), 1e-2, vec![]),
        (Optimizer::rmsprop(), 1e-2, vec![]),
        (Optimizer::sgd(), 1e-2, vec![32]),
        (Optimizer::adam(), 1e-2, vec![32]),
        (Optimizer::rmsprop(), 1e-2, vec![32]),
    ];
    for (optimizer, learning_rate, hidden) in cases {
        let opts = TrainOptions {
            epochs: 30,
            learning_rate,
            optimizer,
            hidden: hidden.clone(),
            dropout: if hidden.is_empty() { 0.0 } else { 0.2 },
            patience: None,
            ..TrainOptions::default()
        };
        let (head, report) = run(4, (&x, &y), (&vx, &vy), &opts).unwrap();
        let first = &report.history[0];
        let last = report.history.last().unwrap();
        assert_eq!(report.history.len(), 30);
        assert!(
            last.train_loss < 0.5 * first.train_loss,
            "{optimizer:?} {hidden:?}: loss {} -> {}",
            first.train_loss,
            last.train_loss
        );
        let val_acc = last.val_acc.unwrap();
        assert!(
            val_acc > 0.95,
            "{optimizer:?} {hidden:?}: val acc {val_acc}"
        );
        assert!((accuracy(&head, &vx, &vy) - f64::from(val_acc)).abs() < 1e-6);
    }
}

#[test]
fn weight_decay_shrinks_weights() {
    let (x, y) = blobs(21, 22, &[50, 50], 16, 1.0);
    let empty = Array2::<f32>::zeros((0, 16));
    let base = TrainOptions {
        epochs: 20,
        learning_rate: 1e-2,
        ..TrainOptions::default()
    };
    let norm = |h: &Head| h.layers[0].weight.mapv(|v| v * v).sum();
    let (plain, _) = run(2, (&x, &y), (&empty, &[]), &base).unwrap();
    let decayed_opts = TrainOptions {
        weight_decay: 0.5,
        ..base
    };
    let (decayed, report) = run(2, (&x, &y), (&empty, &[]), &decayed_opts).unwrap();
    assert!(norm(&decayed) < 0.5 * norm(&plain));
    assert!(report.history.iter().all(|r| r.val_loss.is_none()));
    assert_eq!(report.best_epoch, None);
    assert!(!report.stopped_early);
}

// ---------------------------------------------------------------- early stopping

#[test]
fn early_stopping_restores_the_best_weights() {
    // Few training examples, a third of them mislabelled, and a wide MLP: it first learns the
    // classes, then memorises the wrong labels and the validation loss turns upwards.
    let (x, mut y) = blobs(31, 32, &[10, 10, 10], 64, 2.0);
    y.iter_mut().step_by(3).for_each(|c| *c = (*c + 1) % 3);
    let (vx, vy) = blobs(31, 33, &[100, 100, 100], 64, 2.0);
    let opts = TrainOptions {
        epochs: 300,
        batch_size: 8,
        learning_rate: 1e-3,
        hidden: vec![128],
        patience: Some(5),
        ..TrainOptions::default()
    };
    let (head, report) = run(3, (&x, &y), (&vx, &vy), &opts).unwrap();
    assert!(report.stopped_early);
    let best = report.best_epoch.unwrap();
    assert!(best > 1, "best epoch {best}");
    assert_eq!(report.weights_epoch, best);
    assert_eq!(report.history.len(), best + 5);
    let best_loss = report.history[best - 1].val_loss.unwrap();
    assert!(report
        .history
        .iter()
        .all(|r| r.val_loss.unwrap() >= best_loss));
    assert!(report.history.last().unwrap().val_loss.unwrap() > best_loss);

    // The returned head is exactly the head after `best` epochs.
    let (replay, replay_report) = run(
        3,
        (&x, &y),
        (&vx, &vy),
        &TrainOptions {
            epochs: best,
            patience: None,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(weight_bits(&head), weight_bits(&replay));
    assert_eq!(replay_report.weights_epoch, best);
    // And its validation loss is the best recorded one.
    let logits = head.logits(vx.view()).unwrap();
    let ce = cpu::softmax_cross_entropy(logits.view(), &vy, &[1.0; 3], 0.0).unwrap();
    assert!(((ce.weighted_sum / vy.len() as f64) as f32 - best_loss).abs() < 1e-5);
}

// ---------------------------------------------------------------- balancing

#[test]
fn balancing_favours_the_minority_class() {
    let (x, y) = blobs(41, 42, &[400, 40], 8, 2.0);
    let (tx, ty) = blobs(41, 43, &[200, 200], 8, 2.0);
    let empty = Array2::<f32>::zeros((0, 8));
    let opts = TrainOptions {
        epochs: 30,
        learning_rate: 1e-2,
        ..TrainOptions::default()
    };
    let minority = |head: &Head| {
        let p = head.predict(tx.view()).unwrap();
        let predicted = p.iter().filter(|&&c| c == 1).count();
        let recall = p
            .iter()
            .zip(&ty)
            .filter(|(&p, &t)| t == 1 && p == 1)
            .count();
        (predicted, recall)
    };
    let (plain, _) = run(2, (&x, &y), (&empty, &[]), &opts).unwrap();
    let balanced_opts = TrainOptions {
        balance: true,
        ..opts
    };
    let (balanced, _) = run(2, (&x, &y), (&empty, &[]), &balanced_opts).unwrap();
    let (plain_pred, plain_recall) = minority(&plain);
    let (bal_pred, bal_recall) = minority(&balanced);
    assert!(
        bal_pred > plain_pred && bal_recall > plain_recall,
        "minority predicted {plain_pred} -> {bal_pred}, recall {plain_recall} -> {bal_recall}"
    );
    assert_eq!(
        graft::train::class_weights(&y, 2, true).unwrap(),
        vec![440.0 / 800.0, 440.0 / 80.0]
    );
}

// ---------------------------------------------------------------- bad input

#[test]
fn invalid_inputs_are_refused() {
    let (x, y) = blobs(51, 52, &[5, 5], 4, 1.0);
    let (vx, vy) = blobs(51, 53, &[3, 3], 4, 1.0);
    let ok = TrainOptions {
        epochs: 2,
        ..TrainOptions::default()
    };
    assert!(run(2, (&x, &y), (&vx, &vy), &ok).is_ok());

    let invalid = |r: graft::Result<(Head, TrainReport)>, what: &str| match r {
        Err(Error::Invalid(msg)) | Err(Error::Dataset(msg)) => assert!(!msg.is_empty()),
        Err(e) => panic!("{what}: unexpected error {e}"),
        Ok(_) => panic!("{what}: accepted"),
    };
    let empty = Array2::<f32>::zeros((0, 4));
    invalid(run(2, (&empty, &[]), (&vx, &vy), &ok), "empty training set");
    invalid(run(2, (&x, &y[1..]), (&vx, &vy), &ok), "label count");
    let mut bad_y = y.clone();
    bad_y[3] = 2;
    invalid(
        run(2, (&x, &bad_y), (&vx, &vy), &ok),
        "training label >= classes",
    );
    let mut bad_vy = vy.clone();
    bad_vy[0] = 7;
    invalid(
        run(2, (&x, &y), (&vx, &bad_vy), &ok),
        "validation label >= classes",
    );
    let wide = Array2::<f32>::zeros((6, 5));
    invalid(run(2, (&x, &y), (&wide, &vy), &ok), "dimension mismatch");
    let mut nan = x.clone();
    nan[[2, 1]] = f32::NAN;
    invalid(run(2, (&nan, &y), (&vx, &vy), &ok), "NaN embedding");
    let mut inf = vx.clone();
    inf[[0, 0]] = f32::INFINITY;
    invalid(run(2, (&x, &y), (&inf, &vy), &ok), "infinite embedding");
    invalid(run(1, (&x, &[0; 10]), (&vx, &[0; 6]), &ok), "one class");
    invalid(run(0, (&x, &y), (&vx, &vy), &ok), "no classes");

    let bad_options = [
        (
            "batch size 0",
            TrainOptions {
                batch_size: 0,
                ..ok.clone()
            },
        ),
        (
            "epochs 0",
            TrainOptions {
                epochs: 0,
                ..ok.clone()
            },
        ),
        (
            "dropout 1",
            TrainOptions {
                dropout: 1.0,
                ..ok.clone()
            },
        ),
        (
            "dropout < 0",
            TrainOptions {
                dropout: -0.1,
                ..ok.clone()
            },
        ),
        (
            "dropout NaN",
            TrainOptions {
                dropout: f32::NAN,
                ..ok.clone()
            },
        ),
        (
            "smoothing 1",
            TrainOptions {
                label_smoothing: 1.0,
                ..ok.clone()
            },
        ),
        (
            "learning rate 0",
            TrainOptions {
                learning_rate: 0.0,
                ..ok.clone()
            },
        ),
        (
            "learning rate inf",
            TrainOptions {
                learning_rate: f32::INFINITY,
                ..ok.clone()
            },
        ),
        (
            "weight decay < 0",
            TrainOptions {
                weight_decay: -1.0,
                ..ok.clone()
            },
        ),
        (
            "hidden 0",
            TrainOptions {
                hidden: vec![8, 0],
                ..ok.clone()
            },
        ),
        (
            "momentum 1.5",
            TrainOptions {
                optimizer: Optimizer::Sgd { momentum: 1.5 },
                ..ok.clone()
            },
        ),
        (
            "huge head",
            TrainOptions {
                hidden: vec![usize::MAX / 2, 3],
                ..ok.clone()
            },
        ),
    ];
    for (what, opts) in bad_options {
        invalid(run(2, (&x, &y), (&vx, &vy), &opts), what);
    }
    // Balancing needs every class in the training set.
    invalid(
        run(
            3,
            (&x, &y),
            (&vx, &vy),
            &TrainOptions {
                balance: true,
                ..ok.clone()
            },
        ),
        "balance with an absent class",
    );
    // Divergence is reported, not returned as NaN weights.
    let (big, _) = blobs(51, 54, &[5, 5], 4, 1e30);
    invalid(
        run(
            2,
            (&big, &y),
            (&vx, &vy),
            &TrainOptions {
                optimizer: Optimizer::Sgd { momentum: 0.9 },
                learning_rate: 1e30,
                // Standardisation would tame the 1e30 embeddings.
                standardize: false,
                ..ok.clone()
            },
        ),
        "divergence",
    );

    // The backend checks its own inputs too.
    let mut backend = CpuBackend::new();
    use graft::head::HeadBackend;
    assert!(backend.train_epoch(0, &[]).is_err());
    let head = Head::new(
        &HeadSpec {
            input_dim: 4,
            hidden: vec![],
            classes: 2,
        },
        1,
    )
    .unwrap();
    let set = Examples::new(x.view(), &y);
    backend
        .begin(&head, set, set, &[1.0, 1.0], &(&ok).into())
        .unwrap();
    assert!(backend.train_epoch(0, &[0, 1, 2]).is_err());
    assert!(backend
        .train_epoch(0, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 99])
        .is_err());
    assert!(head.logits(Array2::<f32>::zeros((2, 3)).view()).is_err());

    // A head whose layers do not chain is refused, not a panic inside ndarray.
    let mut broken = Head::new(
        &HeadSpec {
            input_dim: 4,
            hidden: vec![3],
            classes: 2,
        },
        1,
    )
    .unwrap();
    broken.layers[1].weight = Array2::zeros((5, 2));
    assert!(broken.logits(x.view()).is_err());
    assert!(cpu::forward_backward(&broken, x.view(), &y, &[1.0, 1.0], 0.0, None).is_err());
    assert!(CpuBackend::new()
        .begin(&broken, set, set, &[1.0, 1.0], &(&ok).into())
        .is_err());
    let mut short_bias = head.clone();
    short_bias.layers[0].bias = ndarray::Array1::zeros(1);
    assert!(short_bias.logits(x.view()).is_err());
    assert!(Head { layers: vec![] }.logits(x.view()).is_err());
}

#[test]
fn options_round_trip_through_json_with_defaults() {
    let opts: TrainOptions = serde_json::from_str("{}").unwrap();
    assert_eq!(opts, TrainOptions::default());
    let custom = TrainOptions {
        optimizer: Optimizer::RmsProp {
            rho: 0.9,
            eps: 1e-7,
        },
        hidden: vec![256],
        patience: None,
        ..TrainOptions::default()
    };
    let json = serde_json::to_string(&custom).unwrap();
    assert!(json.contains("\"kind\":\"rmsprop\""), "{json}");
    assert_eq!(serde_json::from_str::<TrainOptions>(&json).unwrap(), custom);
}

// ---------------------------------------------------------------- metrics

#[test]
fn metrics_on_a_hand_checked_example() {
    let names: Vec<String> = ["cat", "dog", "a-very-long-class-name"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let truth = [0, 0, 0, 1, 1, 2, 2, 2];
    let predicted = [0, 0, 1, 1, 2, 2, 2, 0];
    let m = Metrics::compute(&truth, &predicted, &names).unwrap();
    assert_eq!(
        m.confusion,
        vec![vec![2, 1, 0], vec![0, 1, 1], vec![1, 0, 2]]
    );
    assert!((m.accuracy - 5.0 / 8.0).abs() < 1e-12);
    let supports: Vec<usize> = m.per_class.iter().map(|c| c.support).collect();
    let correct: Vec<usize> = m.per_class.iter().map(|c| c.correct).collect();
    assert_eq!(supports, vec![3, 2, 3]);
    assert_eq!(correct, vec![2, 1, 2]);
    assert_eq!(m.per_class[1].accuracy, Some(0.5));
    assert_eq!(m.per_class[2].label, "a-very-long-class-name");

    let table = m.confusion_table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].contains("cat") && lines[0].contains("dog"));
    assert!(lines[0].contains("a-very-long…") && !lines[0].contains("a-very-long-class-name"));
    assert!(lines[1].starts_with("cat") && lines[1].trim_end().ends_with('0'));
    let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
    assert!(widths.iter().all(|&w| w == widths[0]), "{table}");
    // Precision is per predicted class (column sums 3, 2, 3), F1 their harmonic mean with recall.
    let predicted_counts: Vec<usize> = m.per_class.iter().map(|c| c.predicted).collect();
    assert_eq!(predicted_counts, vec![3, 2, 3]);
    assert_eq!(m.per_class[1].precision, Some(0.5));
    assert!((m.per_class[0].f1.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.macro_mean.f1.unwrap() - 11.0 / 18.0).abs() < 1e-12);
    assert!((m.weighted.f1.unwrap() - 5.0 / 8.0).abs() < 1e-12);
    assert!((m.weighted.recall.unwrap() - m.accuracy).abs() < 1e-12);
    let shown = m.to_string();
    let dog = shown
        .lines()
        .find(|l| l.trim_start().starts_with("dog"))
        .unwrap();
    let dog: Vec<&str> = dog.split_whitespace().collect();
    assert_eq!(dog, ["dog", "50.0%", "50.0%", "50.0%", "2"], "{shown}");
    assert!(shown.contains("62.50%") && shown.contains("macro") && shown.contains("weighted"));
    // Where precision and recall differ: cat is always right when answered, dog always answered.
    let two: Vec<String> = vec!["cat".into(), "dog".into()];
    let m = Metrics::compute(&[0, 0, 1], &[0, 1, 1], &two).unwrap();
    assert_eq!(
        (m.per_class[0].accuracy, m.per_class[0].precision),
        (Some(0.5), Some(1.0))
    );
    assert_eq!(
        (m.per_class[1].accuracy, m.per_class[1].precision),
        (Some(1.0), Some(0.5))
    );
    assert!((m.per_class[1].f1.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    // A class never answered has no precision, and no F1; the means skip it.
    let m = Metrics::compute(&[0, 1], &[0, 0], &two).unwrap();
    assert_eq!((m.per_class[1].precision, m.per_class[1].f1), (None, None));
    assert_eq!(m.macro_mean.precision, Some(0.5));

    let empty_class = Metrics::compute(&[0, 0], &[0, 1], &names).unwrap();
    assert_eq!(empty_class.per_class[1].accuracy, None);
    assert!(Metrics::compute(&[0], &[3], &names).is_err());
    assert!(Metrics::compute(&[0, 1], &[0], &names).is_err());
    assert!(Metrics::compute(&[], &[], &names).is_err());
}

// ---------------------------------------------------------------- timing

/// `cargo test --test head_training cpu_training_time -- --ignored --nocapture`
#[test]
#[ignore = "measurement, prints timings"]
fn cpu_training_time() {
    let (x, y) = blobs(61, 62, &[100; 10], 1280, 2.0);
    let (vx, vy) = blobs(61, 63, &[20; 10], 1280, 2.0);
    for hidden in [vec![], vec![256]] {
        let opts = TrainOptions {
            epochs: 50,
            hidden: hidden.clone(),
            patience: None,
            ..TrainOptions::default()
        };
        let (_, report) = run(10, (&x, &y), (&vx, &vy), &opts).unwrap();
        let last = report.history.last().unwrap();
        println!(
            "1000x1280, 10 classes, 50 epochs, hidden {hidden:?}: {:.2} s (val acc {:.3})",
            report.seconds,
            last.val_acc.unwrap()
        );
    }
}

#[test]
fn cross_entropy_is_stable_for_huge_logits() {
    let logits = ndarray::array![[1000.0f32, 0.0], [1000.0, 0.0], [-1e30, 1e30]];
    let ce = cpu::softmax_cross_entropy(logits.view(), &[0, 1, 1], &[1.0, 1.0], 0.0).unwrap();
    // Row losses 0, 1000 and 0.
    assert!(
        (ce.weighted_sum - 1000.0).abs() < 1e-3,
        "{}",
        ce.weighted_sum
    );
    assert_eq!(ce.correct, 2);
    assert!(ce.dlogits.iter().all(|v| v.is_finite()));
    // dZ = (p - t) / B: row 1 has p = (1, 0), t = (0, 1).
    assert!((ce.dlogits[[1, 0]] - 1.0 / 3.0).abs() < 1e-6);
    assert!((ce.dlogits[[1, 1]] + 1.0 / 3.0).abs() < 1e-6);
    // Smoothing e = 0.2 over 2 classes: targets (0.9, 0.1) for label 0.
    let smooth =
        cpu::softmax_cross_entropy(logits.slice(ndarray::s![..1, ..]), &[0], &[2.0, 1.0], 0.2)
            .unwrap();
    assert!((smooth.weighted_sum - 2.0 * 0.1 * 1000.0).abs() < 1e-2);
    assert!((smooth.dlogits[[0, 0]] - 2.0 * (1.0 - 0.9)).abs() < 1e-6);
    assert!(cpu::softmax_cross_entropy(logits.view(), &[0, 1], &[1.0, 1.0], 0.0).is_err());
    assert!(cpu::softmax_cross_entropy(logits.view(), &[0, 1, 2], &[1.0, 1.0], 0.0).is_err());
}
