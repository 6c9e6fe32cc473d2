//! Properties of the candle model that training silently depends on.

use candle_core::{Device, Tensor, D};
use host::config::ModelConfig;
use host::model::{AttentionClassifier, Dropout};

fn config() -> ModelConfig {
    ModelConfig {
        preset: "test".into(),
        vocab_size: 40,
        hidden: 16,
        layers: 2,
        heads: 4,
        ffn: 32,
        pool_dim: 8,
        max_len: 12,
        dropout: 0.1,
        layer_norm_eps: 1e-12,
        labels: (0..5).map(|i| format!("c{i}")).collect(),
        ngrams: Some(bundle::NgramSpec {
            buckets: 64,
            max: 8,
        }),
    }
}

fn ngrams(rows: &[&[u32]], dev: &Device) -> host::model::NgramInput {
    let rows: Vec<Vec<u32>> = rows.iter().map(|r| r.to_vec()).collect();
    host::batching::ngram_input(&rows, dev).unwrap()
}

/// After one backward pass every trainable parameter has a non-zero gradient: catches
/// candle ops without a backward (fused LayerNorm, softmax_last_dim).
#[test]
fn every_parameter_gets_a_gradient() {
    let dev = Device::Cpu;
    let cfg = config();
    let (model, varmap) = AttentionClassifier::fresh(&cfg, 7, &dev).unwrap();
    let ids = Tensor::new(&[[2u32, 10, 11, 12, 3], [2, 20, 3, 0, 0]], &dev).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1., 1., 1.], [1., 1., 1., 0., 0.]], &dev).unwrap();
    let labels = Tensor::new(&[1u32, 3], &dev).unwrap();
    let ng = ngrams(&[&[5, 9, 17], &[40]], &dev);
    let out = model
        .forward(&ids, &mask, Some(&ng), &Dropout::train(0.1, 1))
        .unwrap();
    // The branch losses training adds for a model with a bag: each branch alone.
    let (pooled, bag) = out
        .branches
        .as_ref()
        .expect("a model with a bag has branches");
    let branch = |x: &Tensor| {
        let logits = model.classifier.forward(x).unwrap();
        host::loss::cross_entropy(&logits, &labels, 0.1).unwrap()
    };
    let loss = host::loss::cross_entropy(&out.logits, &labels, 0.1).unwrap();
    let loss = (loss + (branch(pooled) + branch(bag)).unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<_> = data.keys().cloned().collect();
    names.sort();
    assert_eq!(names.len(), host::model::parameter_shapes(&cfg).len());
    for name in names {
        let var = &data[&name];
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // Position rows beyond the longest sequence and unused vocabulary rows get zero
        // gradient by construction; the table as a whole must not.
        assert!(norm > 0.0, "{name} has an all-zero gradient");
    }
}

/// Padding does not change a sequence's logits, and α is a distribution over real tokens.
#[test]
fn padding_invariance_and_attention_distribution() {
    let dev = Device::Cpu;
    let (model, _) = AttentionClassifier::fresh(&config(), 3, &dev).unwrap();
    let off = Dropout::off();
    let alone = model
        .forward(
            &Tensor::new(&[[2u32, 10, 11, 3]], &dev).unwrap(),
            &Tensor::new(&[[1f32, 1., 1., 1.]], &dev).unwrap(),
            Some(&ngrams(&[&[7, 8]], &dev)),
            &off,
        )
        .unwrap();
    let padded = model
        .forward(
            &Tensor::new(&[[2u32, 10, 11, 3, 0, 0], [2, 5, 6, 7, 8, 3]], &dev).unwrap(),
            &Tensor::new(
                &[[1f32, 1., 1., 1., 0., 0.], [1., 1., 1., 1., 1., 1.]],
                &dev,
            )
            .unwrap(),
            Some(&ngrams(&[&[7, 8], &[1, 2, 3, 4, 5]], &dev)),
            &off,
        )
        .unwrap();
    let a = alone.logits.to_vec2::<f32>().unwrap();
    let p = padded.logits.to_vec2::<f32>().unwrap();
    for (x, y) in a[0].iter().zip(&p[0]) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    let alpha = padded.alpha.to_vec2::<f32>().unwrap();
    assert!(
        alpha[0][4] == 0.0 && alpha[0][5] == 0.0,
        "no attention on padding"
    );
    let sums = padded
        .alpha
        .sum(D::Minus1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
}

/// A tiny problem is learnt: the loss goes down over a few steps of the real loop.
#[test]
fn training_loop_learns_a_separable_task() {
    use host::batching::EncodedExample;
    use host::train::{train, TrainOptions};
    let dev = Device::Cpu;
    let mut cfg = config();
    cfg.labels = vec!["a".into(), "b".into()];
    let (model, varmap) = AttentionClassifier::fresh(&cfg, 1, &dev).unwrap();
    let ex = |tok: u32, label: u32, n: u32| EncodedExample {
        ids: vec![2, tok, 10 + n % 5, 3],
        ngrams: vec![1 + n % 7],
        label,
        soft: None,
    };
    let data: Vec<EncodedExample> = (0..40)
        .map(|n| {
            if n % 2 == 0 {
                ex(30, 0, n)
            } else {
                ex(31, 1, n)
            }
        })
        .collect();
    let opts = TrainOptions {
        epochs: 15,
        batch_size: 8,
        lr: 3e-3,
        patience: 15,
        progress: false,
        ..Default::default()
    };
    let mut saved = 0;
    let outcome = train(
        &model,
        &varmap,
        &data,
        &data,
        &opts,
        &Default::default(),
        |_| {
            saved += 1;
            Ok(())
        },
    )
    .unwrap();
    assert!(saved >= 1);
    assert!(outcome.best_val_accuracy == 1.0, "{outcome:?}");
    assert!(outcome.log.last().unwrap().train_loss < outcome.log[0].train_loss);
}
