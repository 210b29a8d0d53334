//! The `http` interface on [`HttpCtx`]: resolve the URL once, send through the session's
//! client (which passes the network checkpoint), hand the outcome to the metrics sink.

use super::Wt;
use crate::metrics::MetricKey;
use crate::net::http::method_str;
use crate::net::url::{check_len, resolve};
use crate::session::state::{HttpCtx, Recent};
use crate::wit::RequestError;
use crate::wit::http::{self, Request, Response, ResponseParts};
use std::sync::Arc;
use std::time::Duration;

/// Requests one `batch` call may carry; they run `http_connections` at a time.
pub const MAX_BATCH: usize = 10_000;

/// A request with its URL resolved and its metric key named.
struct Prepared {
    request: Request,
    url: Result<Arc<url::Url>, RequestError>,
    key: MetricKey,
}

impl HttpCtx {
    fn prepare(&mut self, mut request: Request) -> Prepared {
        // Only a request without query pairs is cached: the resolved URL carries them.
        let cacheable = request.query.is_empty();
        if cacheable
            && let Some(r) = &self.recent
            && r.method == request.method
            && r.text == request.url
            && r.metric_name == request.options.metric_name
        {
            let (url, key) = (Ok(r.url.clone()), r.key.clone());
            return Prepared { request, url, key };
        }
        let method = method_str(request.method);
        let url = resolve(self.net.base_url.as_ref(), &request.url, false).and_then(|mut u| {
            let query: usize = request
                .query
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum();
            check_len(u.as_str().len().saturating_add(query))?;
            if !request.query.is_empty() {
                u.query_pairs_mut()
                    .extend_pairs(std::mem::take(&mut request.query).iter());
            }
            Ok(Arc::new(u))
        });
        let name = match (&request.options.metric_name, &url) {
            (Some(name), _) => name.as_str(),
            (None, Ok(u)) => u.path(),
            (None, Err(_)) => request.url.as_str(),
        };
        let key = MetricKey::http(method, name);
        if let (Ok(u), true) = (&url, cacheable) {
            self.recent = Some(Recent {
                method: request.method,
                text: request.url.clone(),
                metric_name: request.options.metric_name.clone(),
                url: u.clone(),
                key: key.clone(),
            });
        }
        Prepared { request, url, key }
    }
}

impl HttpCtx {
    /// Each redirect hop followed is a request of its own under `http redirect hop`; the
    /// request's key keeps the whole chain's time.
    fn record_hops(&mut self) {
        let hops = self.client.take_hops();
        if hops.is_empty() {
            return;
        }
        let key = MetricKey::fixed(crate::metrics::keys::HTTP_REDIRECT);
        for micros in hops {
            self.sink.duration(&key, u64::from(micros));
        }
    }
}

impl HttpCtx {
    /// One request, its outcome recorded; the response carries the parts `keep` names.
    async fn send_one(
        &mut self,
        request: Request,
        keep: ResponseParts,
    ) -> Result<Response, RequestError> {
        let p = self.prepare(request);
        let flight = self.sink.in_flight(p.key);
        let r = match (p.url, self.deadline.clamp(Duration::MAX)) {
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(RequestError::Timeout),
            (Ok(url), Some(cap)) => self.client.send(&self.net, p.request, url, cap, keep).await,
        };
        self.mark.host_returned();
        flight.http(&r);
        self.record_hops();
        r
    }
}

impl http::Host for HttpCtx {
    async fn send(&mut self, request: Request) -> Wt<Result<Response, RequestError>> {
        Ok(self.send_one(request, ResponseParts::all()).await)
    }

    async fn send_keeping(
        &mut self,
        request: Request,
        keep: ResponseParts,
    ) -> Wt<Result<Response, RequestError>> {
        Ok(self.send_one(request, keep).await)
    }

    async fn batch(&mut self, requests: Vec<Request>) -> Wt<Vec<Result<Response, RequestError>>> {
        if requests.len() > MAX_BATCH {
            let why = format!(
                "a batch of {} requests is over the limit of {MAX_BATCH}; split it",
                requests.len()
            );
            return Ok(vec![Err(RequestError::Invalid(why)); requests.len()]);
        }
        let prepared: Vec<Prepared> = requests.into_iter().map(|r| self.prepare(r)).collect();
        let mut flights = Vec::with_capacity(prepared.len());
        let mut sendable = Vec::new();
        let mut results: Vec<Option<Result<Response, RequestError>>> = Vec::new();
        let cap = self.deadline.clamp(Duration::MAX);
        for p in prepared {
            flights.push(self.sink.in_flight(p.key));
            match (p.url, cap) {
                (Err(e), _) => results.push(Some(Err(e))),
                (Ok(_), None) => results.push(Some(Err(RequestError::Timeout))),
                (Ok(url), Some(_)) => {
                    results.push(None);
                    sendable.push((p.request, url));
                }
            }
        }
        let cap = cap.unwrap_or_default();
        let mut sent = self
            .client
            .batch(&self.net, sendable, cap)
            .await
            .into_iter();
        self.mark.host_returned();
        let out: Vec<_> = results
            .into_iter()
            .map(|r| {
                r.or_else(|| sent.next())
                    .unwrap_or(Err(RequestError::Interrupted))
            })
            .collect();
        for (flight, r) in flights.into_iter().zip(&out) {
            flight.http(r);
        }
        self.record_hops();
        Ok(out)
    }
}
