#ifndef CLAA_TESTS_INTEGRATION_CHILD_PROCESS_H_
#define CLAA_TESTS_INTEGRATION_CHILD_PROCESS_H_

// Starts a real binary (claa-server, claa-cli) for integration tests, reads its stdout, and
// always kills it on destruction so a failing test leaves no server behind.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace claa::testing {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { Kill(SIGKILL); }

  // argv[0] is the program path. stdin_text, if given, is written to the child's stdin.
  bool Start(const std::vector<std::string>& argv,
             const std::optional<std::string>& stdin_text = std::nullopt) {
    int out_pipe[2];
    int in_pipe[2];
    if (pipe(out_pipe) != 0 || pipe(in_pipe) != 0) return false;
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      // The child dies with the test process even when no destructor runs (ctest killing a test
      // at its timeout, a crash), so that no orphaned server loads the machine for the tests
      // after it. The signal follows the thread that forked: fixtures start children from the
      // test's own thread.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the test died before prctl
      dup2(out_pipe[1], STDOUT_FILENO);
      dup2(in_pipe[0], STDIN_FILENO);
      close(out_pipe[0]);
      close(out_pipe[1]);
      close(in_pipe[0]);
      close(in_pipe[1]);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(out_pipe[1]);
    close(in_pipe[0]);
    out_ = fdopen(out_pipe[0], "r");
    if (stdin_text) {
      size_t off = 0;
      while (off < stdin_text->size()) {
        ssize_t n = write(in_pipe[1], stdin_text->data() + off, stdin_text->size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
    }
    close(in_pipe[1]);
    return out_ != nullptr;
  }

  // Next stdout line without the newline; nullopt at end of output.
  std::optional<std::string> ReadLine() {
    if (out_ == nullptr) return std::nullopt;
    std::string line;
    int c;
    while ((c = fgetc(out_)) != EOF) {
      if (c == '\n') return line;
      line.push_back(static_cast<char>(c));
    }
    if (line.empty()) return std::nullopt;
    return line;
  }

  // Reads lines until one contains `marker`; returns that line (nullopt if output ended).
  std::optional<std::string> WaitForLine(const std::string& marker) {
    while (auto line = ReadLine()) {
      if (line->find(marker) != std::string::npos) return line;
    }
    return std::nullopt;
  }

  std::string ReadAll() {
    std::string all;
    while (auto line = ReadLine()) all += *line + "\n";
    return all;
  }

  // Waits for exit; returns the exit code (or 128 + signal).
  int Wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (out_) fclose(out_);
    out_ = nullptr;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void Kill(int sig) {
    if (pid_ > 0) {
      kill(pid_, sig);
      Wait();
    }
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

}  // namespace claa::testing

#endif  // CLAA_TESTS_INTEGRATION_CHILD_PROCESS_H_
