//! `/v1/predictors` and `/v1/jobs`: the registry of trained predictors (with their held-out
//! evaluation), training and fine-tuning as queued jobs for `archdb worker`, and activation
//! (serving processes switch to the newly active predictor without dropping requests).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ApiContext;
use super::error::{Error, Problem, Result};
use super::extract::{JsonBody, Path};
use super::server::Client;
use crate::db::jobs::{self, Job};
use crate::db::predictors::{self as store, PredictorInfo};
use crate::predict::Target;
use crate::training::recipe::{self, RecipeTrainRequest};
use crate::training::{
    FinetuneRequest, JobParams, TrainRequest, validate_finetune, validate_train,
};

pub fn router() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(list_predictors, create_predictor))
        .routes(routes!(create_recipe_predictor))
        .routes(routes!(get_predictor))
        .routes(routes!(activate_predictor))
        .routes(routes!(finetune_predictor))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
}

#[derive(Debug, Serialize, ToSchema)]
struct PredictorList {
    predictors: Vec<PredictorInfo>,
    /// The recipe predictor serving LEMUR targets now: the active registered one (its `id`), or
    /// the bundled one compiled into the binary (`id` null).
    recipe: Option<RecipeInfo>,
}

/// What the recipe predictor covers and how it did on held-out families.
#[derive(Debug, Serialize, ToSchema)]
struct RecipeInfo {
    /// Its registry id; null for the bundled one.
    id: Option<i64>,
    /// Per dataset: rows and graphs trained on, the typical recipe (used for missing fields)
    /// and the measured ranges of each hyperparameter.
    #[schema(value_type = Vec<Object>)]
    datasets: serde_json::Value,
    /// The grouped cross-validation (whole LEMUR families held out) that calibrated it.
    #[schema(value_type = Object)]
    evaluation: serde_json::Value,
}

/// Every registered predictor with its held-out evaluation (Kendall τ-b, Spearman, MAE, split,
/// seed, train size, device, training time), and the recipe predictor that serves.
#[utoipa::path(get, path = "/v1/predictors", tag = "predictions",
    responses((status = 200, body = PredictorList)))]
async fn list_predictors(State(ctx): State<ApiContext>) -> Result<Json<PredictorList>> {
    let recipe = ctx
        .predictors
        .recipe()
        .map(|served| -> Result<RecipeInfo> {
            let r = &served.predictor;
            Ok(RecipeInfo {
                id: served.id,
                datasets: serde_json::to_value(&r.datasets)
                    .map_err(|e| Error::Internal(e.into()))?,
                evaluation: r.evaluation.clone(),
            })
        })
        .transpose()?;
    Ok(Json(PredictorList {
        predictors: store::list(&ctx.pool).await?,
        recipe,
    }))
}

/// A queued job.
#[derive(Debug, Serialize, ToSchema)]
struct Queued {
    job_id: i64,
    /// Where to follow it.
    job: String,
}

fn queued(id: i64) -> Response {
    let location = format!("/v1/jobs/{id}");
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location.clone())],
        Json(Queued {
            job_id: id,
            job: location,
        }),
    )
        .into_response()
}

/// Queues the training of a predictor for `archdb worker`; answers 202 with the job.
#[utoipa::path(post, path = "/v1/predictors", tag = "predictions",
    request_body = TrainRequest,
    responses(
        (status = 202, body = Queued),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid settings, or a target without measured architectures", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "this caller has the most jobs allowed queued or running", body = Problem, content_type = "application/problem+json")))]
async fn create_predictor(
    State(ctx): State<ApiContext>,
    client: Client,
    JsonBody(request): JsonBody<TrainRequest>,
) -> Result<Response> {
    validate_train(&request).map_err(|e| Error::Unprocessable(format!("{e:#}")))?;
    check_target(&ctx, &request.target).await?;
    enqueue(&ctx, &client, JobParams::Train(request)).await
}

/// Queues the training of a recipe predictor (LEMUR accuracy conditioned on dataset and
/// training recipe) on every LEMUR image-classification trial linked to a stored graph, with a
/// grouped cross-validation over families; answers 202 with the job. It serves once activated.
#[utoipa::path(post, path = "/v1/predictors/recipe", tag = "predictions",
    request_body = RecipeTrainRequest,
    responses(
        (status = 202, body = Queued),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid settings, or no LEMUR trial linked to a stored graph", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "this caller has the most jobs allowed queued or running", body = Problem, content_type = "application/problem+json")))]
async fn create_recipe_predictor(
    State(ctx): State<ApiContext>,
    client: Client,
    JsonBody(request): JsonBody<RecipeTrainRequest>,
) -> Result<Response> {
    recipe::validate(&request).map_err(|e| Error::Unprocessable(format!("{e:#}")))?;
    if !store::recipe_trials_exist(&ctx.pool).await? {
        return Err(Error::Unprocessable(
            "no LEMUR image-classification accuracy is linked to a stored graph \
             (import lemur, then lemur-onnx)"
                .into(),
        ));
    }
    enqueue(&ctx, &client, JobParams::TrainRecipe(request)).await
}

async fn find(ctx: &ApiContext, id: i64) -> Result<PredictorInfo> {
    store::get(&ctx.pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no predictor with id {id}")))
}

/// One predictor.
#[utoipa::path(get, path = "/v1/predictors/{id}", tag = "predictions", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = PredictorInfo), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_predictor(
    State(ctx): State<ApiContext>,
    Path(id): Path<i64>,
) -> Result<Json<PredictorInfo>> {
    Ok(Json(find(&ctx, id).await?))
}

/// Makes a predictor the active one of its target. Serving processes load it and switch over
/// (in-flight requests finish on the previous one). Answers with the predictor.
#[utoipa::path(post, path = "/v1/predictors/{id}/activate", tag = "predictions", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = PredictorInfo), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn activate_predictor(
    State(ctx): State<ApiContext>,
    Path(id): Path<i64>,
) -> Result<Json<PredictorInfo>> {
    let info = find(&ctx, id).await?;
    store::activate(&ctx.pool, info.id).await?;
    // This process switches before answering (others on the NOTIFY).
    ctx.predictors
        .reload(&ctx.pool)
        .await
        .map_err(Error::Internal)?;
    Ok(Json(find(&ctx, info.id).await?))
}

/// Queues a few-shot fine-tune of a predictor to a new target from `samples` of its measured
/// architectures (GENNAPE: 50); the result is a new predictor. Answers 202 with the job.
#[utoipa::path(post, path = "/v1/predictors/{id}/finetune", tag = "predictions", params(("id" = i64, Path, minimum = 1)),
    request_body = FinetuneRequest,
    responses(
        (status = 202, body = Queued),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "this caller has the most jobs allowed queued or running", body = Problem, content_type = "application/problem+json")))]
async fn finetune_predictor(
    State(ctx): State<ApiContext>,
    client: Client,
    Path(id): Path<i64>,
    JsonBody(mut request): JsonBody<FinetuneRequest>,
) -> Result<Response> {
    let info = find(&ctx, id).await?;
    request.predictor_id = info.id;
    validate_finetune(&request).map_err(|e| Error::Unprocessable(format!("{e:#}")))?;
    check_target(&ctx, &request.target).await?;
    enqueue(&ctx, &client, JobParams::Finetune(request)).await
}

/// 422 naming the covered targets unless `target` has measured architectures to train on.
async fn check_target(ctx: &ApiContext, target: &Target) -> Result<()> {
    if store::target_measured(&ctx.pool, target).await? {
        return Ok(());
    }
    let covered: Vec<String> = store::covered_targets(&ctx.pool)
        .await?
        .into_iter()
        .map(|(benchmark, dataset, metric, epochs, splits)| {
            let mut line = format!("{benchmark}/{dataset}/{metric}");
            match epochs.as_slice() {
                [] => {}
                [one] => line += &format!(" epoch {one}"),
                [first, .., last] if epochs.len() > 6 => {
                    line += &format!(" epochs {first}..={last} ({} values)", epochs.len())
                }
                _ => line += &format!(" epochs {epochs:?}"),
            }
            if !splits.is_empty() {
                line += &format!(" splits {}", splits.join("/"));
            }
            line
        })
        .collect();
    let epoch = target
        .epoch
        .map(|e| format!(" epoch {e}"))
        .unwrap_or_default();
    let split = target
        .split
        .as_ref()
        .map(|s| format!(" split {s}"))
        .unwrap_or_default();
    Err(Error::Unprocessable(format!(
        "target {}/{}/{}{epoch}{split} has no measured architectures to train on; covered \
         targets (benchmark/dataset/metric): {}",
        target.benchmark,
        target.dataset,
        target.metric,
        if covered.is_empty() {
            "none (import a benchmark first)".to_string()
        } else {
            covered.join("; ")
        }
    )))
}

/// Queues `job` for `client`, within its cap on pending jobs (429 at the cap).
async fn enqueue(ctx: &ApiContext, client: &Client, job: JobParams) -> Result<Response> {
    let (kind, params) = job.to_columns().map_err(Error::Internal)?;
    let cap = ctx.config.max_queued_jobs;
    match jobs::enqueue_capped(&ctx.pool, &kind, &params, &client.to_string(), cap).await? {
        Ok(id) => Ok(queued(id)),
        Err(pending) => Err(Error::TooMany {
            detail: format!(
                "{client} has {pending} training jobs queued or running, the most allowed \
                 ({cap}); wait for one to finish or cancel one (POST /v1/jobs/{{id}}/cancel)"
            ),
            retry_after: None,
        }),
    }
}

/// A training or fine-tuning job: state, attempts, progress (stage, member, epoch, loss,
/// validation τ), error, and the predictor it produced.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "predictions", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = Job), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_job(State(ctx): State<ApiContext>, Path(id): Path<i64>) -> Result<Json<Job>> {
    jobs::get(&ctx.pool, id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("no job with id {id}")))
}

/// Cancels a queued job, or asks the worker running it to stop (it ends `cancelled` at its
/// next epoch). Answers with the job.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "predictions", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = Job), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn cancel_job(State(ctx): State<ApiContext>, Path(id): Path<i64>) -> Result<Json<Job>> {
    jobs::cancel(&ctx.pool, id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("no job with id {id}")))
}
