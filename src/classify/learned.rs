//! The learned second opinion: character n-grams (1 to 3 characters of the folded text, with
//! start and end marks) hashed into `2^bits` buckets, and a softmax regression over the three
//! categories trained by plain SGD in a fixed order. Deterministic: the same rows and
//! settings give the same weights bit for bit, so the model is named by the SHA-256 of its
//! training bytes and settings and versioned with the rules that name it (`[model]`).
//! Pure and allocation-free at prediction time (the n-grams are hashed on the fly).

use super::eval::Labeled;
use super::model::ModelDef;
use super::normalize::FoldTable;
use crate::domain::Category;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Marks the start and the end of the text in n-grams.
const EDGE: u32 = 0x2;
/// Largest n-gram, in characters.
const MAX_N: usize = 3;

pub struct Model {
    mask: u32,
    /// Bucket-major: `w[b * 3 + c]`.
    w: Vec<f32>,
    bias: [f32; 3],
    /// First 12 hex digits of the SHA-256 of the training rows and settings.
    pub version: String,
    pub rows: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("version", &self.version)
            .field("rows", &self.rows)
            .finish()
    }
}

/// One n-gram's part in a decision, for explanations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feature {
    pub ngram: String,
    /// Its weight for the chosen category minus the mean of the other two.
    pub weight: f64,
}

#[inline]
fn mix(h: u64, x: u32) -> u64 {
    (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
}

/// Calls `f(bucket, start, len)` for every n-gram of `chars` (already folded, with the edge
/// marks at both ends); `start`/`len` index `chars`.
#[inline]
fn ngrams(chars: &[u32], mask: u32, mut f: impl FnMut(u32, usize, usize)) {
    for i in 0..chars.len() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for n in 1..=MAX_N {
            if i + n > chars.len() {
                break;
            }
            let c = chars[i + n - 1];
            h = mix(h, c);
            if n == 1 && c == EDGE {
                continue;
            }
            // Final avalanche so nearby n-grams spread over the table.
            let mut z = h ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^= z >> 29;
            f(z as u32 & mask, i, n);
        }
    }
}

/// The folded text as code points between edge marks (spaces kept: they separate words).
fn chars_of(fold: &FoldTable, text: &str, folded: &mut String, out: &mut Vec<u32>) {
    fold.fold_into(text, folded);
    out.clear();
    out.push(EDGE);
    out.extend(folded.chars().map(|c| c as u32));
    out.push(EDGE);
}

impl Model {
    /// Trains on `rows` (in this order; duplicates by text are dropped first).
    pub fn train(def: &ModelDef, fold: &FoldTable, rows: &[Labeled], sha: &[u8]) -> Model {
        let bits = def.bits.clamp(16, 22);
        let mask = (1u32 << bits) - 1;
        let mut seen = std::collections::HashSet::new();
        let mut folded = String::new();
        let mut chars = Vec::new();
        let mut docs: Vec<(usize, Vec<u32>)> = Vec::new();
        for r in rows {
            if !seen.insert(r.text.as_str()) {
                continue;
            }
            chars_of(fold, &r.text, &mut folded, &mut chars);
            let mut b = Vec::new();
            ngrams(&chars, mask, |h, _, _| b.push(h));
            docs.push((r.label.index(), b));
        }
        let mut w = vec![0f32; (mask as usize + 1) * 3];
        let mut bias = [0f32; 3];
        // A fixed permutation (LCG), the same every time.
        let mut order: Vec<usize> = (0..docs.len()).collect();
        let mut state: u64 = 0x853c_49e6_748f_ea9b;
        for i in (1..order.len()).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let epochs = def.epochs.max(1);
        let l2 = def.l2 as f32;
        for epoch in 0..epochs {
            let lr = 0.5 / (1.0 + epoch as f32 * 0.5);
            for &d in &order {
                let (y, feats) = &docs[d];
                let x = 1.0 / (feats.len().max(1) as f32).sqrt();
                let mut z = bias;
                for &h in feats {
                    let b = h as usize * 3;
                    for c in 0..3 {
                        z[c] += w[b + c] * x;
                    }
                }
                let p = softmax(z);
                for c in 0..3 {
                    let g = p[c] - if c == *y { 1.0 } else { 0.0 };
                    bias[c] -= lr * g * 0.1;
                    for &h in feats {
                        let i = h as usize * 3 + c;
                        w[i] -= lr * (g * x + l2 * w[i]);
                    }
                }
            }
        }
        let mut hasher = Sha256::new();
        hasher.update(sha);
        hasher.update(format!("bits={bits} epochs={epochs} l2={} n={MAX_N}", def.l2).as_bytes());
        Model {
            mask,
            w,
            bias,
            version: hex::encode(&hasher.finalize()[..6]),
            rows: docs.len(),
        }
    }

    /// Log-probabilities per category (index order complaint, fault, inquiry) of a text
    /// already folded by the rules' table.
    pub fn log_probs_folded(&self, folded: &str, chars: &mut Vec<u32>) -> [f64; 3] {
        chars.clear();
        chars.push(EDGE);
        chars.extend(folded.chars().map(|c| c as u32));
        chars.push(EDGE);
        let mut z = [0f32; 3];
        let mut n = 0usize;
        ngrams(chars, self.mask, |h, _, _| {
            let b = h as usize * 3;
            z[0] += self.w[b];
            z[1] += self.w[b + 1];
            z[2] += self.w[b + 2];
            n += 1;
        });
        let x = 1.0 / (n.max(1) as f32).sqrt();
        let z = [
            z[0] * x + self.bias[0],
            z[1] * x + self.bias[1],
            z[2] * x + self.bias[2],
        ];
        let m = z[0].max(z[1]).max(z[2]);
        let lse = m + ((z[0] - m).exp() + (z[1] - m).exp() + (z[2] - m).exp()).ln();
        [
            (z[0] - lse) as f64,
            (z[1] - lse) as f64,
            (z[2] - lse) as f64,
        ]
    }

    /// The n-grams that pushed hardest toward `cat`, strongest first.
    pub fn top_features(&self, folded: &str, cat: Category, k: usize) -> Vec<Feature> {
        let mut chars = vec![EDGE];
        chars.extend(folded.chars().map(|c| c as u32));
        chars.push(EDGE);
        let ci = cat.index();
        let mut out: Vec<Feature> = Vec::new();
        ngrams(&chars, self.mask, |h, s, n| {
            let b = h as usize * 3;
            let others: f32 = (0..3)
                .filter(|&c| c != ci)
                .map(|c| self.w[b + c])
                .sum::<f32>()
                / 2.0;
            let weight = (self.w[b + ci] - others) as f64;
            let ngram: String = chars[s..s + n]
                .iter()
                .map(|&u| {
                    if u == EDGE {
                        '^'
                    } else {
                        char::from_u32(u).unwrap_or('?')
                    }
                })
                .collect();
            if weight > 0.0 && !out.iter().any(|f| f.ngram == ngram) {
                out.push(Feature { ngram, weight });
            }
        });
        out.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.ngram.cmp(&b.ngram)));
        out.truncate(k);
        out
    }
}

fn softmax(z: [f32; 3]) -> [f32; 3] {
    let m = z[0].max(z[1]).max(z[2]);
    let e = [(z[0] - m).exp(), (z[1] - m).exp(), (z[2] - m).exp()];
    let s = e[0] + e[1] + e[2];
    [e[0] / s, e[1] / s, e[2] / s]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn def() -> ModelDef {
        toml::from_str::<ModelDef>("training = []").unwrap()
    }

    fn rows() -> Vec<Labeled> {
        let mk = |l: Category, t: &str| Labeled {
            line: 0,
            label: l,
            text: t.into(),
        };
        vec![
            mk(Category::Complaint, "你们太坑了，我要找领导"),
            mk(Category::Complaint, "再不处理我就去工信部"),
            mk(Category::Complaint, "谢谢你们让我三天没网用，真棒"),
            mk(Category::Fault, "光猫灯一直红"),
            mk(Category::Fault, "电视显示无信号"),
            mk(Category::Fault, "手机显示无sim卡"),
            mk(Category::Inquiry, "套餐多少钱"),
            mk(Category::Inquiry, "营业厅几点开门"),
            mk(Category::Inquiry, "怎么办理携号转网"),
        ]
    }

    #[test]
    fn trains_deterministically_and_learns_its_rows() {
        let fold = FoldTable::new(&HashMap::new());
        let a = Model::train(&def(), &fold, &rows(), b"x");
        let b = Model::train(&def(), &fold, &rows(), b"x");
        assert_eq!(a.w, b.w, "same rows, same weights");
        assert_eq!(a.version, b.version);
        let mut chars = Vec::new();
        for r in rows() {
            let mut f = String::new();
            fold.fold_into(&r.text, &mut f);
            let lp = a.log_probs_folded(&f, &mut chars);
            let best = (0..3).max_by(|&x, &y| lp[x].total_cmp(&lp[y])).unwrap();
            assert_eq!(best, r.label.index(), "{}", r.text);
            let s: f64 = lp.iter().map(|l| l.exp()).sum();
            assert!((s - 1.0).abs() < 1e-4);
        }
        let c = Model::train(&def(), &fold, &rows()[1..], b"x");
        assert_ne!(a.w, c.w);
    }

    #[test]
    fn top_features_name_ngrams_of_the_text() {
        let fold = FoldTable::new(&HashMap::new());
        let m = Model::train(&def(), &fold, &rows(), b"x");
        let f = m.top_features("光猫灯一直红", Category::Fault, 5);
        assert!(!f.is_empty() && f.len() <= 5);
        for x in &f {
            assert!(
                "^光猫灯一直红^".contains(&x.ngram),
                "{} is not an n-gram of the text",
                x.ngram
            );
            assert!(x.weight > 0.0);
        }
    }
}
