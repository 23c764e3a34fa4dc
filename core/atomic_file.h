// Crash-safe file writes. A file written through AtomicFile holds, after an error, a kill -9 or
// a power loss, either its previous content or the complete new one, never a mix:
//   1. the bytes go to a temporary file in the destination's folder
//      (".<name>.tmp.<pid>", hidden, the process id keeps concurrent writers apart);
//   2. the temporary file is fsync'ed (its data is on the disk before it gets the name);
//   3. it is renamed over the destination (atomic within one file system, POSIX rename(2));
//   4. the folder is fsync'ed (the rename itself is on the disk).
// Any failure (disk full, file-size limit, read-only file system, no permission) throws
// cuseg::Error naming the destination and the system's reason; the destination is left as it
// was and the temporary file is removed.
#pragma once
#include <cstddef>
#include <string>

namespace cuseg {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // opens the temporary file
  ~AtomicFile();                                 // removes it unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& s) { write(s.data(), s.size()); }
  // Steps 2-4. The destination has the new content once this returns.
  void commit();

  const std::string& path() const { return path_; }

 private:
  [[noreturn]] void fail(const char* what, int err);
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// The whole file in one call.
void write_file_atomic(const std::string& path, const std::string& bytes);

// fsync of a file's data by path (e.g. an append-only log before a checkpoint that refers to
// it) and of a folder's entries. Throw cuseg::Error naming the path.
void fsync_path(const std::string& path);
void fsync_folder(const std::string& folder);

// Temporary files AtomicFile leaves behind when its process is killed between steps 1 and 3
// (".<name>.tmp.<pid>" in `folder`, not its sub-folders), removed; returns how many.
int remove_stale_temporaries(const std::string& folder);

}  // namespace cuseg
