//! The tower layer.

use std::sync::Arc;

use tower_layer::Layer;

use crate::groups::Groups;
use crate::hook::RequestHook;
use crate::service::HttpMetricsService;
use crate::state::Shared;

/// A tower [`Layer`] that wraps a service in [`HttpMetricsService`]; made by
/// [`HttpMetrics::layer`](crate::HttpMetrics::layer). Cheap to clone: every service it makes
/// records into the same instruments.
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    pub(crate) context: Arc<LayerContext>,
}

/// What every service of one layer shares, behind one reference count (axum clones the
/// service for each request).
#[derive(Debug)]
pub(crate) struct LayerContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) groups: Arc<Groups>,
    pub(crate) hook: Option<Arc<dyn RequestHook>>,
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            context: self.context.clone(),
        }
    }
}
