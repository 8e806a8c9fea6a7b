//! The statistics lockscope reports measured figures with: medians with a
//! distribution-free confidence interval, slowdowns over repeated runs with
//! Student's t interval, and Spearman's rank correlation with its interval.
//! Deterministic: the same samples give the same interval.

use serde::{Deserialize, Serialize};

/// The confidence asked of every interval lockscope reports.
pub const CONFIDENCE: f64 = 0.95;

/// A median and the interval that holds the true median with probability
/// `coverage` (at least [`CONFIDENCE`] from 6 samples on; fewer samples
/// cannot give that, and the interval is then their whole range).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub median: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub coverage: f64,
    /// How many samples it rests on.
    pub n: usize,
}

impl Estimate {
    /// The median with its order-statistic interval (the binomial method:
    /// the true median lies between the j-th smallest and j-th largest
    /// sample with probability 1 − 2·P(Bin(n, ½) < j)); None without samples.
    pub fn of(values: &[f64]) -> Option<Estimate> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        // The widest rank j (from 1) whose interval still has the confidence asked.
        let coverage_of = |j: usize| 1.0 - 2.0 * binomial_half_cdf(n, j - 1);
        let j = (1..=n.div_ceil(2)).take_while(|&j| coverage_of(j) >= CONFIDENCE).last().unwrap_or(1);
        Some(Estimate { median, ci_low: v[j - 1], ci_high: v[n - j], coverage: coverage_of(j), n })
    }

    /// Whether the interval leaves out zero: a difference the samples support.
    pub fn excludes_zero(&self) -> bool {
        excludes_zero(self.ci_low, self.ci_high)
    }

    /// Whether `x` lies inside the interval.
    pub fn covers(&self, x: f64) -> bool {
        self.ci_low <= x && x <= self.ci_high
    }
}

/// Whether the interval [lo, hi] leaves out zero.
fn excludes_zero(lo: f64, hi: f64) -> bool {
    lo > 0.0 || hi < 0.0
}

/// The median of `values` (NaNs left out); None without values.
pub fn median(values: &[f64]) -> Option<f64> {
    Estimate::of(values).map(|e| e.median)
}

/// A share of throughput lost (negative: gained) from several windows, with
/// its interval; where the interval holds zero, no slowdown is claimed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slowdown {
    /// The median over the windows, of one run or of every run.
    pub slowdown: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub coverage: f64,
    /// Windows measured.
    pub windows: usize,
    /// Runs they came from (each a fresh start of every instance).
    #[serde(default = "one_run")]
    pub runs: usize,
    /// The interval has the confidence asked ([`CONFIDENCE`]) and leaves
    /// out zero: a change the windows support. A narrower interval (fewer
    /// than 6 windows of one run) supports no claim, whatever it holds.
    pub interference: bool,
}

fn one_run() -> usize {
    1
}

impl Slowdown {
    /// From one run's windows: their median and its order-statistic interval.
    pub fn of(per_window: &[f64]) -> Option<Slowdown> {
        let e = Estimate::of(per_window)?;
        Some(Slowdown::new(e.median, (e.ci_low, e.ci_high), e.coverage, e.n, 1))
    }

    /// From several runs' windows. The windows of one run move together
    /// (each start places memory and files anew: runs of one stress cell
    /// differed by 2 points where their windows agreed within 0.5), so the
    /// runs are the interval's independent samples: Student's t over the
    /// runs' medians. The slowdown is the median over every run's windows:
    /// a run whose worker stepped moves the mean of three medians by a third
    /// of its step, the pooled median hardly (BENCHMARKS.md: six studies).
    /// It lies between the lowest and highest of the runs' medians, so
    /// inside the interval for up to 4 runs. One run with windows: as
    /// [`Slowdown::of`].
    pub fn of_runs(per_run: &[Vec<f64>]) -> Option<Slowdown> {
        let runs: Vec<&Vec<f64>> = per_run.iter().filter(|w| w.iter().any(|x| x.is_finite())).collect();
        let windows = runs.iter().map(|w| w.iter().filter(|x| x.is_finite()).count()).sum();
        match runs.as_slice() {
            [] => None,
            [one] => Slowdown::of(one),
            _ => {
                let medians: Vec<f64> = runs.iter().filter_map(|w| median(w)).collect();
                let n = medians.len() as f64;
                let mean = medians.iter().sum::<f64>() / n;
                let sd = (medians.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                let half = student_t_975(medians.len() - 1) * sd / n.sqrt();
                let pooled: Vec<f64> = runs.iter().flat_map(|w| w.iter().copied()).collect();
                let slowdown = median(&pooled)?;
                Some(Slowdown::new(slowdown, (mean - half, mean + half), CONFIDENCE, windows, medians.len()))
            }
        }
    }

    fn new(slowdown: f64, (ci_low, ci_high): (f64, f64), coverage: f64, windows: usize, runs: usize) -> Slowdown {
        let interference = coverage >= CONFIDENCE && excludes_zero(ci_low, ci_high);
        Slowdown { slowdown, ci_low, ci_high, coverage, windows, runs, interference }
    }

    /// "over 6 windows" or "over 3 runs (6 windows)".
    pub fn basis(&self) -> String {
        match self.runs {
            1 => format!("over {} windows", self.windows),
            runs => format!("over {runs} runs ({} windows)", self.windows),
        }
    }

    /// The slowdown the windows support: the median, or 0 where the
    /// interval holds zero. The calibration ranks its rungs by it, so noise
    /// around zero does not order rungs built to show no interference.
    pub fn reported(&self) -> f64 {
        if self.interference {
            self.slowdown
        } else {
            0.0
        }
    }

    /// "20.0% slower [+18.0%, +22.0%]", "3.1% faster [...]", "none
    /// [-2.0%, +3.1%]" or, from too few windows for a 95% interval,
    /// "too few windows: +10.0% [+5.0%, +20.0%]".
    pub fn describe(&self) -> String {
        let ci = format!("[{:+.1}%, {:+.1}%]", 100.0 * self.ci_low, 100.0 * self.ci_high);
        match (self.interference, self.slowdown > 0.0) {
            (false, _) if self.coverage < CONFIDENCE => format!("too few windows: {:+.1}% {ci}", 100.0 * self.slowdown),
            (false, _) => format!("none {ci}"),
            (true, true) => format!("{:.1}% slower {ci}", 100.0 * self.slowdown),
            (true, false) => format!("{:.1}% faster {ci}", -100.0 * self.slowdown),
        }
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom: the
/// two-sided 95% ([`CONFIDENCE`]) interval's multiplier. Above 30 degrees,
/// 30's value (a slightly wider interval than needed).
fn student_t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    T[df.clamp(1, 30) - 1]
}

/// P(X ≤ k) for X ~ Binomial(n, ½).
fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    // C(n, i) / 2^n built up term by term in floating point (n stays small).
    let mut term = 0.5f64.powi(n as i32);
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        sum += term;
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    sum
}

/// Spearman's rank correlation of paired values (ties get their mean rank);
/// None with fewer than three pairs or a constant side.
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let ranks = |values: Vec<f64>| -> Vec<f64> {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        let mut ranks = vec![0.0; values.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
                j += 1;
            }
            for &k in &order[i..=j] {
                ranks[k] = (i + j) as f64 / 2.0 + 1.0;
            }
            i = j + 1;
        }
        ranks
    };
    let x = ranks(pairs.iter().map(|p| p.0).collect());
    let y = ranks(pairs.iter().map(|p| p.1).collect());
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let (vx, vy): (f64, f64) = (x.iter().map(|a| (a - mx).powi(2)).sum(), y.iter().map(|b| (b - my).powi(2)).sum());
    (vx > 0.0 && vy > 0.0).then(|| cov / (vx * vy).sqrt())
}

/// The chance that pairing the values at random gives a rho at least as
/// large as theirs (exact, over every pairing); None above 8 pairs or where
/// rho is undefined. For few pairs, where an interval says little: 4 pairs
/// ranked exactly alike happen by chance 1 time in 24.
pub fn spearman_p(pairs: &[(f64, f64)]) -> Option<f64> {
    let observed = spearman(pairs)?;
    if pairs.len() > 8 {
        return None;
    }
    let xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let mut ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let (mut at_least, mut all) = (0u32, 0u32);
    // Heap's algorithm over the orderings of ys.
    let mut c = vec![0usize; ys.len()];
    let mut visit = |ys: &[f64]| {
        let pairs: Vec<(f64, f64)> = xs.iter().copied().zip(ys.iter().copied()).collect();
        all += 1;
        if spearman(&pairs).is_some_and(|r| r >= observed - 1e-12) {
            at_least += 1;
        }
    };
    visit(&ys);
    let mut i = 0;
    while i < ys.len() {
        if c[i] < i {
            ys.swap(if i % 2 == 0 { 0 } else { c[i] }, i);
            visit(&ys);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    Some(f64::from(at_least) / f64::from(all))
}

/// The 95% interval of Spearman's rho over `n` pairs, by Fisher's z with
/// the Fieller–Hartley–Pearson variance 1.06/(n − 3); None below 4 pairs.
pub fn spearman_interval(rho: f64, n: usize) -> Option<(f64, f64)> {
    if n < 4 {
        return None;
    }
    // 1.96: the normal quantile of a two-sided 95% interval (CONFIDENCE).
    let half = 1.96 * (1.06 / (n as f64 - 3.0)).sqrt();
    let z = rho.clamp(-0.999_999, 0.999_999).atanh();
    Some(((z - half).tanh(), (z + half).tanh()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_interval_widens_to_the_range_below_six_samples() {
        let e = Estimate::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((e.median, e.ci_low, e.ci_high, e.n), (2.0, 1.0, 3.0, 3));
        assert!((e.coverage - 0.75).abs() < 1e-12, "1 - 2 / 2^3");
        let six = Estimate::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!((six.median, six.ci_low, six.ci_high), (3.5, 1.0, 6.0));
        assert!((six.coverage - (1.0 - 2.0 / 64.0)).abs() < 1e-12 && six.coverage >= CONFIDENCE);
        // 20 samples: P(Bin(20, ½) ≤ 5) = 0.0207 ≤ 0.025 < P(≤ 6): the 6th smallest to the 6th largest.
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        let twenty = Estimate::of(&values).unwrap();
        assert_eq!((twenty.ci_low, twenty.ci_high), (6.0, 15.0));
        assert!((twenty.coverage - 0.9586).abs() < 1e-4, "{}", twenty.coverage);
        assert_eq!(Estimate::of(&[f64::NAN]), None);
    }

    #[test]
    fn zero_inside_the_interval_is_no_difference() {
        let none = Slowdown::of(&[-0.1, 0.05, 0.2, 0.1, 0.0, 0.15]).unwrap();
        assert_eq!((none.interference, none.describe().as_str(), none.reported()), (false, "none [-10.0%, +20.0%]", 0.0));
        assert_eq!(Slowdown::of(&[0.1, 0.05, 0.2, 0.1, 0.15, 0.12]).unwrap().describe(), "11.0% slower [+5.0%, +20.0%]");
        assert_eq!(Slowdown::of(&[-0.1, -0.05, -0.06, -0.08, -0.07, -0.09]).unwrap().describe(), "7.5% faster [-10.0%, -5.0%]");
    }

    #[test]
    fn fewer_windows_than_a_95_percent_interval_needs_support_no_claim() {
        // One window: a point, with no confidence at all (a gVisor worker
        // whose reports straddled the other windows left one).
        let one = Slowdown::of(&[0.29]).unwrap();
        assert_eq!((one.coverage, one.interference, one.reported()), (0.0, false, 0.0));
        assert_eq!(one.describe(), "too few windows: +29.0% [+29.0%, +29.0%]");
        // Five windows all above zero: their range is a 94% interval.
        let five = Slowdown::of(&[0.1, 0.05, 0.2, 0.12, 0.15]).unwrap();
        assert!(five.coverage < CONFIDENCE && five.ci_low > 0.0 && !five.interference, "{five:?}");
        // Runs carry Student's t interval at the confidence asked, from two runs on.
        assert!(Slowdown::of_runs(&[vec![0.2], vec![0.21]]).unwrap().interference);
    }

    #[test]
    fn runs_not_windows_are_the_samples_of_several_runs() {
        // Each run's windows agree closely; the runs do not.
        let runs = [vec![0.19, 0.195], vec![0.21, 0.215], vec![0.20, 0.205]];
        let d = Slowdown::of_runs(&runs).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // Medians 0.1925, 0.2125, 0.2025: mean 0.2025, sd 0.01, t(2) 4.303;
        // the six windows' median (0.20 + 0.205) / 2.
        let half = 4.303 * 0.01 / 3f64.sqrt();
        assert!(close(d.slowdown, 0.2025) && close(d.ci_low, 0.2025 - half) && close(d.ci_high, 0.2025 + half), "{d:?}");
        assert!(d.ci_low < 0.19 && 0.215 < d.ci_high, "wider than all six windows' range");
        assert_eq!((d.runs, d.windows, d.coverage, d.interference), (3, 6, CONFIDENCE, true));
        assert_eq!(d.basis(), "over 3 runs (6 windows)");
        // One run, or runs of which one measured anything: its windows' interval.
        let one = Slowdown::of_runs(&[vec![0.1, 0.05, 0.2], vec![]]).unwrap();
        assert_eq!(one, Slowdown::of(&[0.1, 0.05, 0.2]).unwrap());
        assert_eq!((one.runs, one.basis().as_str()), (1, "over 3 windows"));
        assert_eq!(Slowdown::of_runs(&[vec![], vec![f64::NAN]]), None);
        // Runs that disagree in sign support no slowdown.
        assert!(!Slowdown::of_runs(&[vec![0.05], vec![-0.04], vec![0.02]]).unwrap().interference);
    }

    #[test]
    fn one_run_s_step_hardly_moves_the_slowdown() {
        // Two runs near +2%; in the third the worker stepped, +15%.
        let runs = [vec![0.02, 0.018, 0.022, 0.021], vec![0.019, 0.02, 0.023, 0.017], vec![0.15, 0.16, 0.14, 0.15]];
        let d = Slowdown::of_runs(&runs).unwrap();
        assert!((d.slowdown - 0.0215).abs() < 1e-9, "the pooled windows' median: {d:?}");
        // The interval still holds the runs' spread (their mean is 6.3%): no slowdown is claimed.
        assert!(d.ci_low < 0.0 && d.ci_high > 0.15 && !d.interference, "{d:?}");
    }

    #[test]
    fn spearman_ranks_with_ties() {
        assert_eq!(spearman(&[(1.0, 10.0), (2.0, 20.0), (3.0, 35.0)]), Some(1.0));
        assert_eq!(spearman(&[(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]), Some(-1.0));
        let tied = spearman(&[(1.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 3.0)]).unwrap();
        assert!(tied > 0.8 && tied < 1.0, "{tied}");
        assert_eq!(spearman(&[(1.0, 1.0), (2.0, 2.0)]), None, "too few pairs");
        assert_eq!(spearman(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None, "a constant side");
    }

    #[test]
    fn a_perfect_ranking_of_four_happens_by_chance_once_in_24() {
        let perfect = [(1.0, 0.1), (2.0, 0.2), (3.0, 0.3), (4.0, 0.4)];
        assert!((spearman_p(&perfect).unwrap() - 1.0 / 24.0).abs() < 1e-12);
        let reversed = [(1.0, 0.4), (2.0, 0.3), (3.0, 0.2), (4.0, 0.1)];
        assert_eq!(spearman_p(&reversed), Some(1.0), "every ordering does at least as well");
        let nine: Vec<(f64, f64)> = (0..9).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(spearman_p(&nine), None);
    }

    #[test]
    fn rho_intervals_narrow_with_more_pairs_and_stay_in_range() {
        assert_eq!(spearman_interval(0.9, 3), None);
        let (lo4, hi4) = spearman_interval(0.8, 4).unwrap();
        let (lo20, hi20) = spearman_interval(0.8, 20).unwrap();
        assert!(-1.0 <= lo4 && lo4 < lo20 && lo20 < 0.8 && 0.8 < hi20 && hi20 < hi4 && hi4 <= 1.0, "{lo4} {lo20} {hi20} {hi4}");
        let (lo, hi) = spearman_interval(1.0, 5).unwrap();
        assert!(lo < 1.0 && hi <= 1.0);
    }
}
