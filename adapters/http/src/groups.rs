//! Route groups: which group a request path counts in.

/// The group of a path that matches no rule when no default group is set.
pub const UNMATCHED: &str = "unmatched";

/// Rules mapping a request path to a route group, by path prefix or by axum's matched route
/// template.
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
///
/// With [`matched_route`](Self::matched_route) (feature `axum`), a request no prefix rule
/// matches counts in the group named by the route template axum matched (`/users/{id}`).
#[derive(Clone, Debug)]
pub struct Groups {
    /// (prefix without trailing `/`, group index), longest prefix first.
    rules: Vec<(String, usize)>,
    names: Vec<String>,
    default: Option<usize>,
    matched_route: bool,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            rules: Vec::new(),
            names: vec![UNMATCHED.to_string()],
            default: None,
            matched_route: false,
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

    /// Requests that match no prefix rule count in a group named by the route template axum
    /// matched (its [`MatchedPath`](axum::extract::MatchedPath): `/users/{id}`, never the raw
    /// path), so there is one group per route of the router; a request that matched no route
    /// (axum's fallback, a 404) counts in the default group if set, otherwise in
    /// `unmatched`. Add the layer with `Router::layer` (or `route_layer`): axum sets the matched
    /// path before calling it. At most 1024 templates make groups; further ones count as
    /// unmatched.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use sampler_adapter_http::{Groups, HttpMetrics};
    ///
    /// let metrics = HttpMetrics::new(
    ///     &sampler_api::Registry::new(),
    ///     Groups::new().matched_route().prefix("/admin", "admin"),
    /// );
    /// let app: Router = Router::new()
    ///     .route("/users/{id}", get(|| async { "user" })) // group "/users/{id}"
    ///     .route("/admin/keys", get(|| async { "keys" })) // group "admin"
    ///     .layer(metrics.layer());
    /// # drop(app);
    /// ```
    #[cfg(feature = "axum")]
    pub fn matched_route(mut self) -> Self {
        self.matched_route = true;
        self
    }

    /// The group name of `path` by the prefix rules (the route template is not known here).
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
        self.rule_of(path).unwrap_or_else(|| self.fallback())
    }

    /// The group index of the prefix rule `path` matches, if any.
    pub(crate) fn rule_of(&self, path: &str) -> Option<usize> {
        for (prefix, index) in &self.rules {
            if let Some(rest) = path.strip_prefix(prefix.as_str()) {
                if rest.is_empty() || rest.starts_with('/') || prefix.is_empty() {
                    return Some(*index);
                }
            }
        }
        None
    }

    /// The group index of a request no rule (nor route) matches.
    pub(crate) fn fallback(&self) -> usize {
        self.default.unwrap_or(0)
    }

    /// Whether requests group by axum's matched route template.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn by_matched_route(&self) -> bool {
        self.matched_route
    }
}
