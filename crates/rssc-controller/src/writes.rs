//! Kubernetes writes whose answers the controller does not read. `Api`'s methods decode the
//! object every write returns; for a runner's Pod or an EphemeralRunner that is a whole Pod
//! spec plus managed fields as large again, decoded only to be dropped, several times per
//! runner. These send the same requests and check the answers (a failure still comes back as
//! the API server's error) without building the object.

use kube::{
    Api, Client, Resource,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    core::Request,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Creates `object` through `api`, reading of the answer only what `A` holds.
pub async fn create<K, A>(client: &Client, api: &Api<K>, object: &K) -> Result<A, kube::Error>
where
    K: Resource + Serialize,
    A: DeserializeOwned,
{
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let mut request = Request::new(api.resource_url())
        .create(&PostParams::default(), body)
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("create");
    client.request::<A>(request).await
}

/// Creates `object` through `api` and checks the answer.
pub async fn create_unread<K: Resource + Serialize>(
    client: &Client,
    api: &Api<K>,
    object: &K,
) -> Result<(), kube::Error> {
    create::<K, serde::de::IgnoredAny>(client, api, object)
        .await
        .map(drop)
}

/// Patches the object `name` and checks the answer.
pub async fn patch_unread<K: Resource, P: Serialize>(
    client: &Client,
    api: &Api<K>,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<(), kube::Error> {
    let request = Request::new(api.resource_url()).patch(name, params, patch);
    send_unread(client, request, "patch").await
}

/// Patches the status of the object `name` and checks the answer.
pub async fn patch_status_unread<K: Resource, P: Serialize>(
    client: &Client,
    api: &Api<K>,
    name: &str,
    params: &PatchParams,
    patch: &Patch<P>,
) -> Result<(), kube::Error> {
    let request = Request::new(api.resource_url()).patch_subresource("status", name, params, patch);
    send_unread(client, request, "patch_status").await
}

/// Deletes the object `name` and reads of the answer only the finalizers still holding it:
/// `None` if it is gone at once (the API server answers with a `Status` then). `Api::delete`
/// decodes the answer twice, once as untyped JSON to tell the two apart.
pub async fn delete_reading_finalizers<K: Resource>(
    client: &Client,
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<Option<Vec<String>>, kube::Error> {
    let mut request = Request::new(api.resource_url())
        .delete(name, params)
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("delete");
    let answer: DeleteAnswer = client.request(request).await?;
    Ok(answer.held_by())
}

/// What [`delete_reading_finalizers`] reads of a deletion's answer.
#[derive(Deserialize, Debug, Default)]
struct DeleteAnswer {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: FinalizersOnly,
}

#[derive(Deserialize, Debug, Default)]
struct FinalizersOnly {
    #[serde(default)]
    finalizers: Vec<String>,
}

impl DeleteAnswer {
    fn held_by(self) -> Option<Vec<String>> {
        (self.kind != "Status").then_some(self.metadata.finalizers)
    }
}

/// Sends `request` (named `verb`, as `Api` names its requests) and checks the answer.
async fn send_unread(
    client: &Client,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    verb: &'static str,
) -> Result<(), kube::Error> {
    let mut request = request.map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert(verb);
    client.request::<serde::de::IgnoredAny>(request).await.map(drop)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(answer: serde_json::Value) -> Option<Vec<String>> {
        serde_json::from_value::<DeleteAnswer>(answer).unwrap().held_by()
    }

    #[test]
    fn a_deletion_answer_tells_the_finalizers_that_hold_the_object() {
        let deleting = json!({
            "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "EphemeralRunner",
            "metadata": {"name": "r", "uid": "u", "deletionTimestamp": "2026-12-07T12:00:00Z",
                         "finalizers": ["scaleset.actions.github.com/runner-registration", "x/y"],
                         "managedFields": [{"manager": "rssc", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"runnerTemplate": {"spec": {"containers": [{"name": "runner"}]}}},
            "status": {"phase": "Running"}
        });
        assert_eq!(
            read(deleting),
            Some(vec![
                "scaleset.actions.github.com/runner-registration".into(),
                "x/y".into()
            ])
        );
        let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                          "details": {"name": "r", "kind": "ephemeralrunners", "uid": "u"}});
        assert_eq!(read(gone), None);
        assert_eq!(
            read(json!({"kind": "EphemeralRunner", "metadata": {"name": "r"}})),
            Some(vec![])
        );
    }
}
