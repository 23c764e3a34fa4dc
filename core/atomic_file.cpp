// Crash-safe file writes (see atomic_file.h).
#include "cuseg/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "cuseg/core/check.h"

namespace fs = std::filesystem;

namespace cuseg {

namespace {

std::string folder_of(const std::string& path) {
  const fs::path p = fs::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

std::string reason(int err) {
  std::string r = std::strerror(err);
  if (err == ENOSPC) r += ": the disk is full";
  if (err == EFBIG) r += ": over the file-size limit (ulimit -f)";
  if (err == EROFS) r += ": the folder is on a read-only file system";
  return r;
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  const fs::path p(path);
  tmp_ = (p.parent_path() / ("." + p.filename().string() + ".tmp." + std::to_string(::getpid())))
             .string();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create a temporary file in its folder", errno);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::fail(const char* what, int err) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  CUSEG_THROW(path_ << ": " << what << " (" << reason(err) << "); the previous file, if any, "
                    << "is left as it was");
}

void AtomicFile::write(const void* data, size_t bytes) {
  CUSEG_CHECK(fd_ >= 0 && !committed_, path_ << ": write after commit or failure");
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write failed", errno);
    }
    p += n;
    bytes -= size_t(n);
  }
}

void AtomicFile::commit() {
  CUSEG_CHECK(fd_ >= 0 && !committed_, path_ << ": commit after commit or failure");
  if (::fsync(fd_) != 0) fail("fsync failed", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("close failed", errno);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename into place", errno);
  committed_ = true;
  fsync_folder(folder_of(path_));
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) CUSEG_THROW(path << ": cannot open for fsync (" << reason(errno) << ")");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) CUSEG_THROW(path << ": fsync failed (" << reason(err) << ")");
}

void fsync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) CUSEG_THROW(folder << ": cannot open the folder for fsync (" << reason(errno) << ")");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems (and some network mounts) do not support fsync on a folder (EINVAL);
  // the rename is then as durable as that file system makes it.
  if (rc != 0 && err != EINVAL)
    CUSEG_THROW(folder << ": fsync of the folder failed (" << reason(err) << ")");
}

int remove_stale_temporaries(const std::string& folder) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder, ec)) {
    const std::string name = e.path().filename().string();
    const size_t t = name.rfind(".tmp.");
    if (name.size() < 2 || name[0] != '.' || t == std::string::npos || t == 0) continue;
    const std::string pid = name.substr(t + 5);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (pid == std::to_string(::getpid())) continue;  // this process's own, in use
    if (fs::remove(e.path(), ec)) ++n;
  }
  return n;
}

}  // namespace cuseg
