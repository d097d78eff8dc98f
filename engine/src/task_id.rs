//! The identity of a task: one processor's work on one partition of its inputs. Shared by the
//! state stores (which keep each task's data apart) and the task runtime. Nothing else here.

use std::fmt;

/// One processor's task for one partition (`<processor>/<partition>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub processor: String,
    pub partition: i32,
}

impl TaskId {
    pub fn new(processor: impl Into<String>, partition: i32) -> Self {
        TaskId {
            processor: processor.into(),
            partition,
        }
    }

    /// Parses `<processor>/<partition>` (the form `Display` writes).
    pub fn parse(s: &str) -> Option<TaskId> {
        let (processor, partition) = s.rsplit_once('/')?;
        if processor.is_empty() {
            return None;
        }
        let partition = partition.parse().ok().filter(|p: &i32| *p >= 0)?;
        Some(TaskId::new(processor, partition))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.processor, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = TaskId::new("wc", 3);
        assert_eq!(id.to_string(), "wc/3");
        assert_eq!(TaskId::parse("wc/3"), Some(id));
        assert_eq!(TaskId::parse("wc"), None);
        assert_eq!(TaskId::parse("/3"), None);
        assert_eq!(TaskId::parse("wc/-1"), None);
    }
}
