//! Route groups: which group a request path counts in.

/// The group of a path that matches no rule when no default group is set.
pub const UNMATCHED: &str = "unmatched";

/// Rules mapping a request path to a route group, by path prefix.
///
/// A prefix matches the path itself and everything below it on a segment boundary (`/api`
/// matches `/api` and `/api/users`, not `/apis`); the longest matching prefix wins. A path
/// that matches no rule counts in the default group if one is set, otherwise in one group
/// named `unmatched`. Raw paths never become labels, so the number of series is bounded by
/// the number of groups.
///
/// ```
/// use sampler_adapter_http::Groups;
/// let groups = Groups::new().prefix("/api", "api").prefix("/api/admin", "admin");
/// assert_eq!(groups.group_of("/api/users"), "api");
/// assert_eq!(groups.group_of("/api/admin/keys"), "admin");
/// assert_eq!(groups.group_of("/apis"), "unmatched");
/// assert_eq!(groups.default_group("web").group_of("/"), "web");
/// ```
#[derive(Clone, Debug)]
pub struct Groups {
    /// (prefix without trailing `/`, group index), longest prefix first.
    rules: Vec<(String, usize)>,
    names: Vec<String>,
    default: Option<usize>,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            rules: Vec::new(),
            names: vec![UNMATCHED.to_string()],
            default: None,
        }
    }
}

impl Groups {
    /// No rules: every request counts in `unmatched` (or the default group, once set).
    pub fn new() -> Self {
        Groups::default()
    }

    /// Paths under `prefix` count in `group`.
    pub fn prefix(mut self, prefix: &str, group: &str) -> Self {
        let index = self.intern(group);
        let prefix = prefix.trim_end_matches('/').to_string();
        self.rules.push((prefix, index));
        self.rules
            .sort_by_key(|rule| std::cmp::Reverse(rule.0.len()));
        self
    }

    /// Paths that match no rule count in `group` instead of `unmatched`.
    pub fn default_group(mut self, group: &str) -> Self {
        self.default = Some(self.intern(group));
        self
    }

    /// The group name of `path`.
    pub fn group_of(&self, path: &str) -> &str {
        &self.names[self.index_of(path)]
    }

    fn intern(&mut self, group: &str) -> usize {
        match self.names.iter().position(|n| n == group) {
            Some(i) => i,
            None => {
                self.names.push(group.to_string());
                self.names.len() - 1
            }
        }
    }

    /// Every group name, by index (`unmatched` is index 0).
    pub(crate) fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    pub(crate) fn index_of(&self, path: &str) -> usize {
        for (prefix, index) in &self.rules {
            if let Some(rest) = path.strip_prefix(prefix.as_str()) {
                if rest.is_empty() || rest.starts_with('/') || prefix.is_empty() {
                    return *index;
                }
            }
        }
        self.default.unwrap_or(0)
    }
}
