//! A progress front end for tests: records every task's final counts, so a test can check that
//! what an operator would have seen matches what the run did.

use std::sync::{Arc, Mutex};

use arke_core::{Counts, Progress, ProgressSink, TaskView, Unit};

/// One finished task as the front end saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub name: String,
    pub position: u64,
    pub total: Option<u64>,
}

/// Records finished tasks.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    finished: Arc<Mutex<Vec<Finished>>>,
}

impl Recorder {
    /// A `Progress` that reports to this recorder.
    pub fn progress(&self) -> Progress {
        Progress::new(Arc::new(self.clone()))
    }

    /// Every finished task, in the order they finished.
    pub fn finished(&self) -> Vec<Finished> {
        self.finished.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The last finished task of that name.
    pub fn task(&self, name: &str) -> Option<Finished> {
        self.finished().into_iter().rev().find(|f| f.name == name)
    }
}

#[derive(Debug)]
struct View(Arc<Mutex<Vec<Finished>>>);

impl TaskView for View {
    fn finish(&self, c: &Counts) {
        if let Ok(mut v) = self.0.lock() {
            v.push(Finished {
                name: c.name().to_string(),
                position: c.position(),
                total: c.total(),
            });
        }
    }
}

impl ProgressSink for Recorder {
    fn begin(&self, _: &str, _: Option<u64>, _: Unit) -> Box<dyn TaskView> {
        Box::new(View(self.finished.clone()))
    }
}
