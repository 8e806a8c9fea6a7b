//! Counting a workload's operations, and reporting them per interval: the
//! stress experiment plots a worker's throughput over time, so a workload
//! can print one JSON line per interval besides its total.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One line of a workload's output: an interval's throughput while it runs
/// (`--report-every`), and its total at the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Line {
    Interval(Sample),
    Total(Sample),
}

/// Operations over a span of a workload's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub workload: String,
    /// What one operation is.
    pub unit: String,
    /// Seconds since the workload started, at the end of the span.
    pub t: f64,
    pub ops: u64,
    /// Time spent in the measured phase (set-up and clean-up are not timed).
    pub seconds: f64,
    /// ops / seconds.
    pub ops_per_sec: f64,
}

impl Line {
    /// Parses one line of workload output; None for anything else.
    pub fn parse(text: &str) -> Option<Line> {
        serde_json::from_str(text.trim()).ok()
    }
}

pub struct Meter {
    workload: &'static str,
    unit: &'static str,
    every: Option<Duration>,
    start: Instant,
    interval_start: Instant,
    interval: (u64, Duration),
    total: (u64, Duration),
    out: Box<dyn Write + Send>,
}

impl Meter {
    /// A meter that prints an interval line to stdout every `every` (if set).
    pub fn new(workload: &'static str, unit: &'static str, every: Option<Duration>) -> Self {
        Self::to_writer(workload, unit, every, Box::new(std::io::stdout()))
    }

    pub fn to_writer(workload: &'static str, unit: &'static str, every: Option<Duration>, out: Box<dyn Write + Send>) -> Self {
        let now = Instant::now();
        Meter { workload, unit, every, start: now, interval_start: now, interval: (0, Duration::ZERO), total: (0, Duration::ZERO), out }
    }

    pub fn started(&self) -> Instant {
        self.start
    }

    /// Counts `ops` done in `timed` of measured time, and reports the
    /// interval if it is over.
    pub fn add(&mut self, ops: u64, timed: Duration) {
        self.interval.0 += ops;
        self.interval.1 += timed;
        self.total.0 += ops;
        self.total.1 += timed;
        if let Some(every) = self.every {
            if self.interval_start.elapsed() >= every {
                let line = Line::Interval(self.sample(self.interval));
                // A reader that went away must not stop the workload.
                let _ = writeln!(self.out, "{}", serde_json::to_string(&line).unwrap_or_default());
                let _ = self.out.flush();
                self.interval = (0, Duration::ZERO);
                self.interval_start = Instant::now();
            }
        }
    }

    /// The whole run's total.
    pub fn finish(self) -> Sample {
        self.sample(self.total)
    }

    fn sample(&self, (ops, timed): (u64, Duration)) -> Sample {
        let seconds = timed.as_secs_f64();
        Sample {
            workload: self.workload.into(),
            unit: self.unit.into(),
            t: self.start.elapsed().as_secs_f64(),
            ops,
            seconds,
            ops_per_sec: if seconds > 0.0 { ops as f64 / seconds } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reports_each_interval_and_the_total() {
        let buf = Shared::default();
        let mut m = Meter::to_writer("w", "op", Some(Duration::from_millis(20)), Box::new(buf.clone()));
        for _ in 0..5 {
            m.add(10, Duration::from_millis(1));
            std::thread::sleep(Duration::from_millis(25));
        }
        let total = m.finish();
        assert_eq!(total.ops, 50);
        assert!((total.ops_per_sec - 10_000.0).abs() < 1.0, "{total:?}");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Line> = text.lines().map(|l| Line::parse(l).unwrap()).collect();
        // The first add opens the first interval; each later add closes one.
        assert!(lines.len() >= 4, "{text}");
        let interval_ops: u64 = lines
            .iter()
            .map(|l| match l {
                Line::Interval(s) => s.ops,
                Line::Total(_) => 0,
            })
            .sum();
        assert!((40..=50).contains(&interval_ops), "{text}");
        assert!(Line::parse("not json").is_none());
    }
}
