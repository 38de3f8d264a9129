// Structured JSON-lines logging. Every line is one JSON object with a
// timestamp, a level, an event name and fields we generate. Patient data may
// only be passed at debug level, which is off unless log.level says debug.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "nlohmann/json.hpp"

namespace secondread::log {

struct LogOptions {
  std::string level = "info";  // trace|debug|info|warn|error|critical|off
  std::string file;            // empty: stderr
};

// Installs the process-wide JSON logger; called once from main().
absl::Status Configure(const LogOptions& options);

enum class Level { kDebug, kInfo, kWarn, kError };

bool Enabled(Level level);
void Event(Level level, std::string_view event, nlohmann::json fields = nlohmann::json::object());

inline void Debug(std::string_view e, nlohmann::json f = nlohmann::json::object()) { Event(Level::kDebug, e, std::move(f)); }
inline void Info(std::string_view e, nlohmann::json f = nlohmann::json::object()) { Event(Level::kInfo, e, std::move(f)); }
inline void Warn(std::string_view e, nlohmann::json f = nlohmann::json::object()) { Event(Level::kWarn, e, std::move(f)); }
inline void Error(std::string_view e, nlohmann::json f = nlohmann::json::object()) { Event(Level::kError, e, std::move(f)); }

// Renders one log line; exposed for tests.
std::string Render(Level level, std::string_view event, const nlohmann::json& fields);

}  // namespace secondread::log
