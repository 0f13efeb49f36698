#include "core/auth/factory.h"

#include <unistd.h>

#include <fstream>
#include <string>

#include "core/auth/pam.h"
#include "core/auth/passwd_file.h"
#include "core/auth/shadow.h"
#include "gtest/gtest.h"
#include "tests/auth/hash_testing.h"
#include "tests/testing/status_matchers.h"

namespace popgate::core::auth {
namespace {

using ::popgate::testing::IsOk;
using ::popgate::testing::StatusIs;

TEST(FactoryTest, BuildsEachBackend) {
  AuthOptions options;
  options.pam_service = "popa3d";
  auto pam = MakeAuthenticator(AuthSpec{AuthKind::kPam, ""}, options);
  ASSERT_THAT(pam, IsOk());
  auto* as_pam = dynamic_cast<PamAuthenticator*>(pam->get());
  ASSERT_NE(as_pam, nullptr);
  EXPECT_EQ(as_pam->service(), "popa3d");

  auto shadow = MakeAuthenticator(AuthSpec{AuthKind::kShadow, ""}, options);
  ASSERT_THAT(shadow, IsOk());
  EXPECT_NE(dynamic_cast<ShadowAuthenticator*>(shadow->get()), nullptr);
}

TEST(FactoryTest, PasswdFileIsLoadedAtConstruction) {
  char path[] = "/tmp/popgate_factory_test_XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream out(path);
    out << "u:" << testing::Sha512("pw") << ":1000:1000::/home/u\n";
  }
  auto auth = MakeAuthenticator(AuthSpec{AuthKind::kPasswdFile, path}, {});
  ::unlink(path);
  ASSERT_THAT(auth, IsOk()) << auth.status();
  EXPECT_THAT((*auth)->Authenticate("u", "pw", nullptr), IsOk());
  // The default AuthenticateFrom ignores the host and behaves the same.
  EXPECT_THAT((*auth)->AuthenticateFrom("192.0.2.1", "u", "pw", nullptr),
              IsOk());
  EXPECT_THAT(MakeAuthenticator(AuthSpec{AuthKind::kPasswdFile, path}, {}),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(FactoryTest, OptionsFromConfig) {
  Config config;
  config.pam_service = "popa3d";
  EXPECT_EQ(AuthOptionsFromConfig(config).pam_service, "popa3d");
  EXPECT_TRUE(AuthOptionsFromConfig(config).shadow_fork_verifier);
}

}  // namespace
}  // namespace popgate::core::auth
