//! The MCP (Model Context Protocol) server for LLM agents: archdb's REST API as tools, over
//! Streamable HTTP at `/mcp` of `archdb serve` and over stdio (`archdb mcp`).
//!
//! A tool call is replayed as the equivalent HTTP request through the application's own router
//! in-process ([`rest`]), so it answers the endpoint's JSON with the endpoint's validation and
//! errors, and over HTTP it carries the caller's `Authorization` header: the REST token rule
//! applies per call (reads open, writes need the token). [`tools`] holds the catalogue, with
//! schemas taken from the OpenAPI document ([`schema`]). See docs/agents.md.

mod rest;
mod schema;
mod tools;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::header;
use axum::http::request::Parts;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

use crate::http::ApiContext;
pub use tools::ToolKind;

/// What an agent reads first: the workflow the tools support.
const INSTRUCTIONS: &str = "archdb stores neural architectures (ONNX models as computation graphs), their measured benchmark results (NAS-Bench-201, NAS-Bench-Macro, LEMUR, ...) and predicts accuracy. \
Start with list_benchmarks; look up measured figures with query_results, nb201_lookup and pareto_front; find stored architectures with search_architectures and get_architecture; \
predict unmeasured ones with predict_accuracy or rank a batch under a params/MACs budget with rank_candidates, then check the best against the truth (nb201_lookup). \
Answers are the REST API's JSON (docs at /docs); large answers are cut to small pages and say how to get more.";

/// The MCP server. Cheap to clone: the REST application is shared.
#[derive(Clone)]
pub struct ArchdbMcp {
    ctx: ApiContext,
    /// The application the tools call; built at the first call because it contains this
    /// server at `/mcp`.
    app: Arc<OnceLock<Router>>,
}

impl ArchdbMcp {
    pub fn new(ctx: ApiContext) -> Self {
        Self {
            ctx,
            app: Arc::default(),
        }
    }

    fn app(&self) -> Router {
        self.app
            .get_or_init(|| crate::http::app(self.ctx.clone()))
            .clone()
    }
}

impl ServerHandler for ArchdbMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("archdb", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::catalog().to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(kind) = ToolKind::from_name(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("no tool `{}`; tools/list names them", request.name),
                None,
            ));
        };
        // Over HTTP the caller's credentials travel with each REST request; stdio has none.
        let auth = context
            .extensions
            .get::<Parts>()
            .and_then(|p| p.headers.get(header::AUTHORIZATION))
            .cloned();
        let rest = rest::Rest {
            app: self.app(),
            auth,
        };
        let args = request.arguments.unwrap_or_default();
        let result = match tools::call(kind, args, &rest).await {
            Ok(answer) => {
                let mut result = CallToolResult::structured(answer.structured);
                result.content = vec![ContentBlock::text(answer.text)];
                result
            }
            Err(failure) => {
                tracing::info!(
                    tool = kind.name(),
                    status = failure.status(),
                    detail = failure.detail(),
                    "MCP tool call refused"
                );
                CallToolResult::error(vec![ContentBlock::text(format!(
                    "{} failed ({} {}): {}\nHow to fix: {}\nProblem: {}",
                    kind.name(),
                    failure.status(),
                    failure.problem["title"].as_str().unwrap_or_default(),
                    failure.detail(),
                    failure.hint,
                    failure.problem
                ))])
            }
        };
        Ok(result.into())
    }
}

/// The Streamable HTTP endpoint mounted at `/mcp`: stateless JSON answers (no session to keep,
/// any instance can answer). Host-header checking against DNS rebinding stays on while the
/// server listens on loopback only; a public server names no host list, and relies on the token.
pub fn http_service(ctx: ApiContext) -> StreamableHttpService<ArchdbMcp, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        // An upload as base64 is 4/3 of the largest ONNX body the REST API takes.
        .with_max_request_body_bytes(ctx.config.max_upload_bytes.saturating_mul(4) / 3 + 65_536);
    if !ctx.config.addr.ip().is_loopback() {
        config = config.disable_allowed_hosts();
    }
    let server = ArchdbMcp::new(ctx);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Serves MCP over stdin/stdout until the client closes it (`archdb mcp`). Logs go to stderr.
pub async fn serve_stdio(ctx: ApiContext) -> anyhow::Result<()> {
    let running = ArchdbMcp::new(ctx).serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}
