//! Kubernetes writes whose answers the controller does not read. `Api`'s methods decode the
//! object every write returns; for a runner's Pod or an EphemeralRunner that is a whole Pod
//! spec plus managed fields as large again, decoded only to be dropped, several times per
//! runner. These send the same requests and check the answers (a failure still comes back as
//! the API server's error) without building the object.

use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
    core::Request,
};
use serde::{Serialize, de::DeserializeOwned};

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
