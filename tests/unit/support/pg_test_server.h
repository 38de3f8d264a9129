// The private PostgreSQL server that tests/integration/lib/with_postgres.sh
// starts for a test binary, which tests that need the database to go away
// stop and start again on the same port, with the settings and paths from the
// file named by SECONDREAD_TEST_PG_ENV.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

namespace secondread::worklist {

class TestServer {
 public:
  bool Load() {
    const char* path = std::getenv("SECONDREAD_TEST_PG_ENV");
    if (!path) return false;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      auto eq = line.find('=');
      if (eq != std::string::npos) env_[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return env_.count("SECONDREAD_PGDATA") && env_.count("SECONDREAD_PG_BIN") && env_.count("SECONDREAD_PG_PORT");
  }
  bool Stop() { return Ctl("-m fast stop"); }
  bool Start() {
    std::string data = env_["SECONDREAD_PGDATA"];
    std::string log = data.substr(0, data.rfind('/')) + "/postgres.log";
    return Ctl("-l '" + log + "' -t 60 -o \"-c listen_addresses=127.0.0.1 -p " + env_["SECONDREAD_PG_PORT"] +
               " -c unix_socket_directories='' -c max_connections=200\" start");
  }

 private:
  bool Ctl(const std::string& args) {
    std::string cmd = "'" + env_["SECONDREAD_PG_BIN"] + "/pg_ctl' -D '" + env_["SECONDREAD_PGDATA"] + "' -w " + args;
    if (geteuid() == 0) cmd = "runuser -u postgres -- " + cmd;
    return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
  }
  std::map<std::string, std::string> env_;
};

}  // namespace secondread::worklist
