//! Starts the Kubernetes API test server and prints its kubeconfig path; runs until killed.

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match rssc_sim_kube::KubeServer::start().await {
        Ok(server) => {
            println!("{}", server.kubeconfig_path().display());
            println!("export KUBECONFIG={}", server.kubeconfig_path().display());
            std::future::pending::<()>().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rssc-kube-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
