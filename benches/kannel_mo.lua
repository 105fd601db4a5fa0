-- wrk script: Kannel-dialect MOs (GET, the README's get-url parameters), every request a
-- new message id; senders spread over 200,000 customers, so most messages open a case and
-- some attach to one. Mixed Chinese (UTF-8, as with mo-recode) and English texts.
local texts = {
  "%E6%88%91%E8%A6%81%E6%8A%95%E8%AF%89%EF%BC%8C%E5%AE%BD%E5%B8%A6%E4%B8%89%E5%A4%A9%E6%B2%A1%E4%BF%AE%E5%A5%BD", -- 我要投诉，宽带三天没修好
  "%E6%89%8B%E6%9C%BA%E6%B2%A1%E4%BF%A1%E5%8F%B7%E4%BA%86%E6%80%8E%E4%B9%88%E5%8A%9E",                                -- 手机没信号了怎么办
  "%E8%AF%B7%E9%97%AE%E4%B8%80%E4%B8%8B%E6%9C%80%E4%BE%BF%E5%AE%9C%E7%9A%84%E5%A5%97%E9%A4%90%E5%A4%9A%E5%B0%91%E9%92%B1", -- 请问一下最便宜的套餐多少钱
  "My+broadband+has+been+down+since+this+morning%2C+please+send+someone+to+fix+the+line",
}
local counter = 0

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  math.randomseed(tid * 7919 + os.time())
end

request = function()
  counter = counter + 1
  local from = 8613000000000 + math.random(0, 199999)
  local text = texts[(counter % #texts) + 1]
  local path = string.format(
    "/inbound/sms/kannel?id=w%d-%d-%d&from=%d&to=10000&ts=1795645874&coding=0&charset=UTF-8&text=%s&smsc=bench&udh=",
    tid, counter, os.time(), from, text)
  return wrk.format("GET", path)
end
