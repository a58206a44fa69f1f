// faultline — umbrella header.
#pragma once
#include "faultline/backend.hpp"
#include "faultline/constants.hpp"
#include "faultline/engine.hpp"
#include "faultline/file.hpp"
#include "faultline/guarded.hpp"
#include "faultline/hugepages.hpp"
#include "faultline/mapping.hpp"
#include "faultline/stats.hpp"
