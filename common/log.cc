#include "common/log.h"

#include <chrono>
#include <ctime>

#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace secondread::log {
namespace {

spdlog::level::level_enum ToSpd(Level level) {
  switch (level) {
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

const char* Name(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

std::string NowIso8601() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now - secs).count();
  std::time_t t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%06lldZ", buf, static_cast<long long>(micros));
  return out;
}

}  // namespace

absl::Status Configure(const LogOptions& options) {
  auto level = spdlog::level::from_str(options.level);
  if (level == spdlog::level::off && options.level != "off") {
    return absl::InvalidArgumentError("log.level: unknown level '" + options.level + "'");
  }
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (options.file.empty()) {
      logger = std::make_shared<spdlog::logger>("secondread", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
      logger = std::make_shared<spdlog::logger>(
          "secondread", std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
    }
  } catch (const spdlog::spdlog_ex& e) {
    return absl::InvalidArgumentError(std::string("log.file: ") + e.what());
  }
  logger->set_pattern("%v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return absl::OkStatus();
}

bool Enabled(Level level) { return spdlog::default_logger_raw()->should_log(ToSpd(level)); }

std::string Render(Level level, std::string_view event, const nlohmann::json& fields) {
  nlohmann::json line = nlohmann::json::object();
  line["ts"] = NowIso8601();
  line["level"] = Name(level);
  line["event"] = std::string(event);
  if (fields.is_object()) {
    for (auto it = fields.begin(); it != fields.end(); ++it) line[it.key()] = it.value();
  }
  // Received strings may hold invalid UTF-8; replace rather than throw.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Event(Level level, std::string_view event, nlohmann::json fields) {
  auto* logger = spdlog::default_logger_raw();
  if (!logger->should_log(ToSpd(level))) return;
  logger->log(ToSpd(level), Render(level, event, fields));
}

}  // namespace secondread::log
