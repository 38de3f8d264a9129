#include "cmd/secondread-worker/serve.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>

#include "common/grpc_tls.h"
#include "common/http_server.h"
#include "common/log.h"
#include "inference/model_repository.h"
#include "inference/service.h"
#include "inference/torch/torch_backend.h"
#include "inference/worker_metrics.h"

namespace secondread {

namespace {
constexpr char kInferenceService[] = "secondread.inference.v1.Inference";
}

absl::Status ServeWorker(const WorkerOptions& options) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  inference::torch_backend::TorchOptions torch_options;
  torch_options.intra_op_threads = options.cpu_threads;
  torch_options.inter_op_threads = options.cpu_interop_threads;
  torch_options.warm_up = options.warm_up;
  inference::torch_backend::ConfigureThreads(torch_options);
  log::Info("worker_runtime", {{"runtime", inference::torch_backend::RuntimeSummary()}});

  metrics::MetricsRegistry registry;
  inference::WorkerMetrics worker_metrics(registry);
  inference::torch_backend::TorchBackendFactory factory(torch_options);
  inference::ModelRepository repository({options.repository, &factory, &worker_metrics});

  auto ops = OpsHttpServer::Start(options.http, &registry, [&]() -> absl::Status {
    if (!repository.AnyReady()) return absl::UnavailableError("no model is ready");
    return absl::OkStatus();
  });
  if (!ops.ok()) return ops.status();

  RETURN_IF_ERROR(repository.LoadAtStart(options.load));

  inference::ServiceOptions service_options;
  service_options.max_image_samples = options.max_image_samples;
  service_options.max_volume_bytes = options.max_volume_bytes;
  service_options.max_concurrent_volumes = options.max_concurrent_volumes;
  inference::InferenceService inference_service(service_options, &repository, &worker_metrics);
  inference::ModelAdminService admin_service(&repository);
  grpc::EnableDefaultHealthCheckService(true);
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (options.tls.files.enabled()) {
    ASSIGN_OR_RETURN(credentials, grpc_tls::ServerCredentials(options.tls));
  } else {
    log::Warn("grpc_plaintext", {{"listen", options.listen},
                                 {"reason", "no tls.certificate: plaintext gRPC, allowed on loopback only"}});
    credentials = grpc::InsecureServerCredentials();
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, credentials, &port);
  if (options.max_connection_age_seconds > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, options.max_connection_age_seconds * 1000);
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  builder.RegisterService(&inference_service);
  if (options.admin) builder.RegisterService(&admin_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return absl::UnavailableError("cannot listen on " + options.listen);
  // Serving once start-up loading is done, even when some model failed: the
  // worker serves the others, and ListModels says why the rest are missing.
  server->GetHealthCheckService()->SetServingStatus(true);
  server->GetHealthCheckService()->SetServingStatus(kInferenceService, true);
  log::Info("worker_started",
            {{"listen", options.listen},
             {"port", port},
             {"metrics_port", (*ops)->port()},
             {"admin", options.admin},
             {"tls", options.tls.files.enabled()}});

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable cv;
  std::thread gpu_poller;
  if (inference::torch_backend::CudaAvailable()) {
    gpu_poller = std::thread([&] {
      std::unique_lock lk(mu);
      while (!stop) {
        for (const auto& m : inference::torch_backend::CudaMemory()) worker_metrics.DeviceMemory(m.device, m.used, m.total);
        cv.wait_for(lk, std::chrono::seconds(5));
      }
    });
  }

  int sig = 0;
  sigwait(&signals, &sig);
  log::Info("shutdown_requested", {{"signal", sig}});
  server->GetHealthCheckService()->SetServingStatus(false);
  // Calls in flight get a few seconds to finish; the batchers then drain.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  {
    std::lock_guard lk(mu);
    stop = true;
  }
  cv.notify_all();
  if (gpu_poller.joinable()) gpu_poller.join();
  (*ops)->Stop();
  log::Info("worker_stopped", {});
  return absl::OkStatus();
}

}  // namespace secondread
