//! Application workloads (paper Tables 6 and 7): real programs on real
//! libraries from Debian's packages, each driven by a Python script that
//! generates its inputs locally (nothing is downloaded) and reports its
//! throughput as the built-in workloads do, so `stress` and the study treat
//! it like them.
//! Also `command`: any program, run to its end, its exit noted.

use std::process::Command;
use std::time::Duration;

use crate::{Budget, WorkloadError};

/// The Python every application shares: dependency checks, the budget, the meter's lines.
const PRELUDE: &str = include_str!("prelude.py");
/// The interpreter: Debian's, whose packages hold the libraries.
pub const PYTHON: &str = "/usr/bin/python3";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    ImageProcessing,
    VideoProcessing,
    FaceDetection,
    LrTraining,
    Cnn,
    Rnn,
    VideoTranscode,
    DataCaching,
    DataCachingCold,
    GraphAnalytics,
}

impl App {
    pub const ALL: [App; 10] = [
        App::ImageProcessing,
        App::VideoProcessing,
        App::FaceDetection,
        App::LrTraining,
        App::Cnn,
        App::Rnn,
        App::VideoTranscode,
        App::DataCaching,
        App::DataCachingCold,
        App::GraphAnalytics,
    ];

    /// Its name as a `lockscope workload` subcommand.
    pub fn name(self) -> &'static str {
        match self {
            App::ImageProcessing => "image-processing",
            App::VideoProcessing => "video-processing",
            App::FaceDetection => "face-detection",
            App::LrTraining => "lr-training",
            App::Cnn => "cnn",
            App::Rnn => "rnn",
            App::VideoTranscode => "video-transcode",
            App::DataCaching => "data-caching",
            App::DataCachingCold => "data-caching-cold",
            App::GraphAnalytics => "graph-analytics",
        }
    }

    fn script(self) -> &'static str {
        match self {
            App::ImageProcessing => include_str!("image_processing.py"),
            App::VideoProcessing => include_str!("video_processing.py"),
            App::FaceDetection => include_str!("face_detection.py"),
            App::LrTraining => include_str!("lr_training.py"),
            App::Cnn => include_str!("cnn.py"),
            App::Rnn => include_str!("rnn.py"),
            App::VideoTranscode => include_str!("video_transcode.py"),
            // The script reads which of the two it is from its name.
            App::DataCaching | App::DataCachingCold => include_str!("data_caching.py"),
            App::GraphAnalytics => include_str!("graph_analytics.py"),
        }
    }

    /// The program: Python given the prelude, the workload's name and its
    /// script, then the budget as arguments.
    pub fn command(self, budget: Budget, report_every: Option<Duration>) -> Command {
        let mut cmd = Command::new(PYTHON);
        cmd.arg("-c").arg(format!("{PRELUDE}\nWORKLOAD = {:?}\n\n{}", self.name(), self.script()));
        match budget {
            Budget::Time(d) => cmd.args(["--duration", &d.as_secs_f64().to_string()]),
            Budget::Rounds(n) => cmd.args(["--rounds", &n.to_string()]),
        };
        if let Some(every) = report_every {
            cmd.args(["--report-every", &every.as_secs_f64().to_string()]);
        }
        cmd
    }

    /// Runs to the end of the budget; its lines go to standard output.
    pub fn run(self, budget: Budget, report_every: Option<Duration>) -> Result<(), WorkloadError> {
        if !std::path::Path::new(PYTHON).exists() {
            return Err(WorkloadError::InvalidArgument(format!(
                "{}: {PYTHON} not found: install it with `apt-get install python3`",
                self.name()
            )));
        }
        run_to_end(&mut self.command(budget, report_every), self.name())
    }
}

/// Runs `cmd` with this process's standard streams; an error unless it exits with status 0.
pub fn run_to_end(cmd: &mut Command, what: &str) -> Result<(), WorkloadError> {
    let status = cmd.status().map_err(crate::io_error(format!("starting {what} ({:?})", cmd.get_program())))?;
    match status.success() {
        true => Ok(()),
        false => Err(WorkloadError::Failed { what: what.to_owned(), status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::Line;

    fn output_of(cmd: &mut Command, dir: &std::path::Path) -> (std::process::ExitStatus, String, String) {
        let out = cmd.current_dir(dir).output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Needs the packages setup.sh installs.
    #[test]
    fn every_application_runs_and_reports_as_the_meter_does() {
        for app in App::ALL {
            let dir = tempfile::tempdir().unwrap();
            let (status, out, err) = output_of(&mut app.command(Budget::Rounds(2), Some(Duration::ZERO)), dir.path());
            assert!(status.success(), "{}: {err}", app.name());
            let lines: Vec<Line> =
                out.lines().map(|l| Line::parse(l).unwrap_or_else(|| panic!("{}: not a meter line: {l}", app.name()))).collect();
            assert_eq!(lines.len(), 3, "{}: an interval per round, then the total: {out}", app.name());
            let Some(Line::Total(total)) = lines.last() else { panic!("{}: no total: {out}", app.name()) };
            assert_eq!(total.workload, app.name());
            assert!(total.ops >= 2 && total.ops_per_sec > 0.0 && total.seconds > 0.0, "{total:?}");
        }
    }

    #[test]
    fn a_missing_library_ends_the_workload_at_once_naming_its_package() {
        let dir = tempfile::tempdir().unwrap();
        let code = format!("{PRELUDE}\nWORKLOAD = 'probe'\nneed('lockscope_no_such_module', 'python3-no-such')\nprint('went on')");
        let (status, out, err) = output_of(Command::new(PYTHON).args(["-c", &code]), dir.path());
        assert!(!status.success());
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains("probe: No module named 'lockscope_no_such_module'") && err.contains("apt-get install python3-no-such"),
            "{err}"
        );
    }

    #[test]
    fn a_command_that_fails_is_an_error_with_its_status() {
        assert!(run_to_end(Command::new("true").arg("x"), "true").is_ok());
        let err = run_to_end(&mut Command::new("false"), "false").unwrap_err();
        assert_eq!(err.to_string(), "false exited with exit status: 1");
        assert!(run_to_end(&mut Command::new("/nonexistent/program"), "it").unwrap_err().to_string().starts_with("starting it"));
    }
}
