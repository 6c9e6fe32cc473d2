#!/usr/bin/env python3
"""Generate the demo home-assistant intent data set (train.csv, test.csv, README.md).

Everything here was written for this project; the output is released under CC0.

Run from anywhere:  python3 models/demo/generate.py
The output is deterministic (fixed seed, no dependence on dict/set ordering).

How it works, per intent:
  * English rows come from hand-written templates filled with slot values
    (rooms, durations, cities, artists, items, ...). Each intent has separate
    TRAIN templates and held-out TEST templates, and every slot has a train
    pool and a held-out test pool. A test row is either a held-out template
    (any slot values) or a train template filled only with held-out values,
    so no test row is a trivial copy of a train row.
  * Rows are then "noised": politeness prefixes/suffixes, casing, punctuation,
    lowercase ASR-style transcripts without punctuation, occasional typos and
    emoji.
  * About 10% of each intent is hand-written simplified Chinese, and a few
    hand-written rows carry emoji or accented Latin letters.
  * The out-of-scope label `oos` is hand-written sentences (no templates).
Train and test share no text, not even after lowercasing and stripping
punctuation/emoji.
"""

import collections
import csv
import os
import random
import re
import string
import unicodedata

SEED = 20241128
HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# Shared slot pools: (train values, held-out test values)
# ---------------------------------------------------------------------------
ROOMS = (
    ["living room", "kitchen", "bedroom", "bathroom", "hallway", "office",
     "garage", "dining room", "kids room", "sunroom", "basement", "study"],
    ["guest room", "laundry room", "attic", "nursery", "den", "master bedroom"],
)
CITIES = (
    ["London", "Paris", "Berlin", "Tokyo", "Seattle", "Chicago", "Madrid",
     "Oslo", "Sydney", "Toronto", "Dublin", "Denver", "Lisbon", "Mumbai",
     "Cape Town", "Zürich", "São Paulo", "Montréal"],
    ["Nairobi", "Vienna", "Boston", "Athens", "Hanoi", "Québec", "Málaga",
     "Kraków", "Auckland"],
)
DUR = (  # as a noun phrase: "for 5 minutes"
    ["5 minutes", "ten minutes", "30 seconds", "2 minutes", "fifteen minutes",
     "an hour", "45 minutes", "1 hour and 20 minutes", "twenty five minutes",
     "90 seconds", "three minutes", "half an hour", "8 minutes"],
    ["7 minutes", "eleven minutes", "40 seconds", "2 hours", "twelve minutes",
     "an hour and a half", "four minutes"],
)
DUR_ADJ = (  # as an adjective: "a 5 minute timer"
    ["5 minute", "ten minute", "30 second", "2 minute", "fifteen minute",
     "one hour", "45 minute", "twenty minute", "90 second", "three minute"],
    ["7 minute", "eleven minute", "40 second", "two hour", "twelve minute",
     "four minute"],
)
FOOD = (  # "the {food} timer"
    ["pasta", "egg", "oven", "laundry", "tea", "pizza", "nap", "potato",
     "homework"],
    ["rice", "cookie", "workout", "bread", "steak"],
)
PURPOSE = (  # "a timer for {what}"
    ["the pasta", "the eggs", "the laundry", "the oven", "my nap", "the tea",
     "the pizza", "homework", "the potatoes"],
    ["the rice", "the cookies", "my workout", "the bread", "the steak"],
)
DAY = (
    ["today", "tomorrow", "this weekend", "tonight", "on saturday",
     "this afternoon", "on friday", "tomorrow morning"],
    ["on monday", "next week", "this evening", "sunday morning", "on thursday"],
)
ARTISTS = (
    ["Taylor Swift", "the Beatles", "Queen", "Miles Davis", "Adele",
     "Daft Punk", "Radiohead", "Fleetwood Mac", "Kendrick Lamar", "Bob Marley",
     "Beyoncé", "Björk", "Ed Sheeran", "Nina Simone", "Coldplay",
     "Édith Piaf"],
    ["Sigur Rós", "Stevie Wonder", "Billie Eilish", "Motörhead",
     "Arctic Monkeys", "Aretha Franklin", "Rosalía", "Dua Lipa"],
)
SONGS = (
    ["Bohemian Rhapsody", "Hey Jude", "Shake It Off", "Hotel California",
     "Wonderwall", "Take Five", "Clair de Lune", "Africa", "Halo",
     "Despacito"],
    ["Imagine", "Dancing Queen", "La Vie en Rose", "Don't Stop Me Now",
     "Superstition", "Hallelujah"],
)
GENRES = (
    ["jazz", "lo-fi beats", "classical music", "rock", "80s hits",
     "chill music", "reggae", "country", "piano music", "hip hop"],
    ["bossa nova", "blues", "k-pop", "disco", "metal", "salsa"],
)
LEVELS = (
    ["7", "8", "9", "10", "eighty percent", "max", "70 percent", "six"],
    ["11", "maximum", "ninety percent", "twelve"],
)
LOW_LEVELS = (
    ["2", "3", "4", "20 percent", "thirty percent", "one", "five"],
    ["1", "ten percent", "two", "25 percent"],
)
STEPS = (
    ["10 percent", "two notches", "a little", "a few steps", "5"],
    ["3 steps", "a notch", "15 percent"],
)
TIMES = (
    ["6 am", "7:30", "six thirty", "8 o'clock", "5:45 am", "noon", "9 pm",
     "seven fifteen", "6:00", "half past seven"],
    ["4:50 am", "quarter past six", "10 am", "6:10", "eight forty five"],
)
ALARM_DAYS = (
    ["tomorrow", "every weekday", "on monday", "tomorrow morning",
     "on saturday", "every day", "on tuesday"],
    ["on thursday", "on weekends", "sunday", "friday morning"],
)
ITEMS = (
    ["milk", "eggs", "bread", "bananas", "coffee", "toilet paper", "olive oil",
     "butter", "rice", "apples", "dish soap", "cheddar cheese", "tomatoes",
     "oat milk", "crème fraîche", "jalapeños", "two lemons", "a dozen eggs",
     "a bag of onions", "cat food", "shampoo"],
    ["pasta sauce", "yogurt", "garlic", "paper towels", "brie",
     "açaí berries", "tortillas", "batteries", "three avocados",
     "laundry detergent"],
)
TEMPS = (
    ["21 degrees", "68", "70 degrees", "19", "seventy two", "22 degrees",
     "18 degrees celsius", "seventy five", "24"],
    ["20 degrees", "seventy", "23", "66 degrees", "sixty eight degrees"],
)
DEGREES = (["two", "3", "a couple of", "1", "five"], ["4", "a few", "three"])
TOPICS = (
    ["cats", "dogs", "computers", "pirates", "math", "food", "the office",
     "dinosaurs", "cheese", "space"],
    ["penguins", "coffee", "robots", "school", "ghosts"],
)
TOPIC_ADJ = (  # "a {topic_adj} joke"
    ["cat", "dog", "computer", "pirate", "math", "food", "office",
     "dinosaur", "cheese", "space"],
    ["penguin", "coffee", "robot", "school", "ghost"],
)
SONG_BY = (  # "play {songby}"
    ["Hey Jude by the Beatles", "Shake It Off by Taylor Swift",
     "Hotel California by the Eagles", "Wonderwall by Oasis",
     "Take Five by Dave Brubeck", "Halo by Beyoncé",
     "Clair de Lune by Debussy", "Africa by Toto",
     "Despacito by Luis Fonsi", "Bohemian Rhapsody by Queen"],
    ["Imagine by John Lennon", "Dancing Queen by ABBA",
     "La Vie en Rose by Édith Piaf", "Superstition by Stevie Wonder",
     "Hallelujah by Leonard Cohen", "Jolene by Dolly Parton"],
)

# ---------------------------------------------------------------------------
# Intents. Templates: "cmd" are imperatives (may get "can you"/"please"),
# "other" are questions/statements (only neutral prefixes).
# ---------------------------------------------------------------------------
INTENTS = {
    "lights_on": dict(
        slots={"room": ROOMS},
        train_cmd=[
            "turn on the {room} lights", "turn the lights on in the {room}",
            "switch on the {room} light", "put the lights on",
            "turn on the lights", "switch the {room} lamp on",
            "light up the {room}", "turn the {room} lights on",
            "turn on the light in the {room}", "switch the lights on",
            "put the {room} light on", "brighten up the {room}",
        ],
        train_other=[
            "lights on in the {room}", "{room} lights on", "lights on",
            "it's too dark in the {room}", "I can't see anything in the {room}",
            "could we get some light in the {room}",
        ],
        test_cmd=[
            "flip the {room} lights on", "power on the light in the {room}",
            "get the lights on in the {room}", "illuminate the {room}",
        ],
        test_other=[
            "need some light in the {room}", "it's pitch black in the {room}",
            "lamp on in the {room}",
        ],
        zh_train=["打开客厅的灯", "把卧室的灯打开", "开灯", "厨房开一下灯",
                  "帮我把书房的灯打开", "太黑了，开个灯吧"],
        zh_test=["请打开走廊的灯", "餐厅的灯打开一下"],
        extra_train=["turn on the lights 💡", "café lights on"],
        extra_test=["put the lights on in the atelier 💡"],
        emoji=["💡", "🔆"],
    ),
    "lights_off": dict(
        slots={"room": ROOMS},
        train_cmd=[
            "turn off the {room} lights", "turn the lights off in the {room}",
            "switch off the {room} light", "kill the lights",
            "turn off all the lights", "switch the {room} lamp off",
            "shut off the {room} lights", "darken the {room}",
            "turn the {room} lights off", "turn off the light in the {room}",
            "switch the lights off", "put the {room} light out",
        ],
        train_other=[
            "lights off in the {room}", "{room} lights off", "lights off",
            "nobody's in the {room}, lights off",
            "I'm going to bed, lights off",
            "it's too bright in the {room}",
        ],
        test_cmd=[
            "cut the lights in the {room}", "power off the {room} light",
            "get the lights off in the {room}", "black out the {room}",
        ],
        test_other=[
            "no more lights in the {room}", "lamp off in the {room}",
            "I'm leaving the {room}, you can turn the lights off",
        ],
        zh_train=["关掉客厅的灯", "把卧室的灯关了", "关灯", "帮我关一下厨房的灯",
                  "所有的灯都关掉", "我要睡觉了，把灯关了"],
        zh_test=["请把浴室的灯关掉", "书房的灯关一下"],
        extra_train=["lights off 🌙", "turn off the café lights"],
        extra_test=["switch off the lights in the chalet 😴"],
        emoji=["🌙", "😴"],
    ),
    "set_timer": dict(
        slots={"dur": DUR, "dura": DUR_ADJ, "what": PURPOSE},
        train_cmd=[
            "set a timer for {dur}", "start a {dura} timer",
            "set a {dura} timer for {what}", "count down {dur}",
            "set a timer for {what}, {dur}", "start a timer for {dur}",
            "time {dur} for {what}", "put a timer on for {dur}",
            "make a {dura} timer", "set timer {dur}",
        ],
        train_other=[
            "timer for {dur}", "I need a timer for {dur}", "{dura} timer",
            "{dur} on the clock for {what}",
        ],
        test_cmd=[
            "begin a countdown of {dur}", "ping me after {dur}",
            "countdown {dur} for {what}", "set the kitchen timer to {dur}",
        ],
        test_other=[
            "can I get a {dura} timer", "timer {dur} for {what}",
        ],
        zh_train=["设置一个十分钟的计时器", "计时五分钟", "帮我定时三十秒",
                  "给煮面条设个八分钟的计时", "开始倒计时二十分钟", "定个一小时的计时器"],
        zh_test=["帮我计时十五分钟", "倒计时两分钟"],
        extra_train=["set a timer for 10 minutes ⏲️",
                     "timer for the crème brûlée, 25 minutes"],
        extra_test=["start a 12 minute timer for the soufflé 🍰"],
        emoji=["⏲️", "⏳"],
    ),
    "cancel_timer": dict(
        slots={"food": FOOD, "dura": DUR_ADJ},
        train_cmd=[
            "cancel the timer", "stop the timer", "cancel my {food} timer",
            "delete the {dura} timer", "turn off the timer",
            "stop the {food} timer", "cancel all timers", "remove the timer",
            "kill the {food} timer", "clear my timers",
            "get rid of the {dura} timer", "abort the countdown",
            "cancel the {dura} timer",
        ],
        train_other=[
            "never mind the timer", "I don't need the {food} timer anymore",
            "the timer can stop now", "timer off", "no more timer",
        ],
        test_cmd=[
            "scrap the timer for the {food}", "forget about the {dura} timer",
            "end the countdown", "call off the {food} timer",
            "dismiss my timer", "shut the timer off",
        ],
        test_other=["no need for the {food} timer anymore"],
        zh_train=["取消计时器", "停止计时", "把倒计时关掉", "取消所有计时器",
                  "不用计时了", "删除那个十分钟的计时器"],
        zh_test=["把计时器取消掉", "结束倒计时吧"],
        extra_train=["cancel the timer ❌", "stop the crêpe timer"],
        extra_test=["call off the timer for the gratin 🙅"],
        emoji=["❌", "🛑"],
    ),
    "weather": dict(
        slots={"city": CITIES, "day": DAY},
        train_cmd=[
            "tell me the weather {day}", "give me the forecast for {city}",
            "check the weather in {city} {day}",
            "show me the weather {day}",
        ],
        train_other=[
            "what's the weather in {city}", "what's the weather like {day}",
            "will it rain {day}", "weather forecast for {city} {day}",
            "do I need an umbrella {day}",
            "how hot will it be in {city} {day}",
            "is it going to snow in {city}", "what's the forecast {day}",
            "how cold is it outside", "is it sunny in {city} right now",
            "weather in {city}", "what's the weather going to be {day}",
            "what will the temperature be in {city} {day}",
        ],
        test_cmd=["look up the weather for {city}"],
        test_other=[
            "should I bring a jacket {day}",
            "any chance of storms in {city} {day}",
            "what are the temperatures looking like in {city}",
            "how's the weather in {city}", "is it windy out {day}",
            "forecast {city}",
        ],
        zh_train=["明天北京天气怎么样", "今天会下雨吗", "上海这周末天气如何",
                  "外面冷不冷", "查一下广州的天气预报", "明天需要带伞吗"],
        zh_test=["成都后天天气怎么样", "今晚会下雪吗"],
        extra_train=["what's the weather in Zürich ☀️",
                     "is it raining in São Paulo 🌧️"],
        extra_test=["weather in Reykjavík tomorrow ❄️"],
        emoji=["☀️", "🌦️"],
    ),
    "play_music": dict(
        slots={"artist": ARTISTS, "song": SONGS, "songby": SONG_BY, "genre": GENRES},
        train_cmd=[
            "play {artist}", "play some {genre}", "play {songby}",
            "put on some {genre}", "play the song {song}",
            "start playing {genre}", "shuffle my {artist} playlist",
            "play music", "play my workout playlist", "put on {song}",
            "play something by {artist}", "play some music",
        ],
        train_other=[
            "I want to hear {artist}", "can we listen to {artist}",
            "let me hear some {genre}", "I feel like listening to {genre}",
            "music please", "{genre} in the {room}",
        ],
        test_cmd=[
            "queue up {song}", "blast some {genre}", "throw on some {artist}",
            "spin {songby}", "queue up {songby}",
        ],
        test_other=[
            "let's hear {song}", "I'm in the mood for {genre}",
        ],
        zh_train=["播放周杰伦的歌", "放点轻音乐", "我想听邓紫棋的《光年之外》",
                  "来一首爵士乐", "放一些古典音乐", "播放我的收藏歌单"],
        zh_test=["随便放首歌听听", "来点摇滚乐"],
        extra_train=["play some Beyoncé", "play Björk 🎶"],
        extra_test=["put on some Rosalía 💃"],
        emoji=["🎶", "🎵"],
    ),
    "pause_music": dict(
        slots={"room": ROOMS},
        train_cmd=[
            "pause the music", "pause", "stop the music", "pause the song",
            "stop playing", "hold the music", "pause playback",
            "stop this song", "pause it for a second",
            "stop the music in the {room}", "pause the music in the {room}",
            "pause whatever is playing", "pause the tunes",
        ],
        train_other=[
            "hold on, pause that", "I'm on the phone, pause the music",
            "enough music for now", "that's enough music", "music stop",
            "pause in the {room}",
        ],
        test_cmd=[
            "freeze the playback", "put the song on hold", "halt the music",
            "stop the tunes", "pause the track",
            "halt playback in the {room}",
        ],
        test_other=["the doorbell rang, pause the song"],
        zh_train=["暂停音乐", "先暂停一下", "别放了", "停止播放", "把歌停了",
                  "音乐暂停"],
        zh_test=["暂停播放", "先把音乐停一下"],
        extra_train=["pause the music ⏸️", "pause the Édith Piaf song"],
        extra_test=["halt the tunes 🤫"],
        emoji=["⏸️", "🤫"],
    ),
    "volume_up": dict(
        slots={"level": LEVELS, "step": STEPS},
        train_cmd=[
            "turn it up", "turn up the volume", "make it louder",
            "increase the volume", "raise the volume to {level}",
            "crank it up", "pump up the volume", "turn the music up",
            "boost the volume by {step}", "turn the volume up to {level}",
            "raise the volume by {step}", "make the music louder",
        ],
        train_other=[
            "volume up", "louder", "a bit louder", "give me more volume",
            "I can't hear it, turn it up", "volume {level}", "louder please",
        ],
        test_cmd=[
            "bump the volume up", "up the volume", "amp it up to {level}",
            "go louder", "push the volume up by {step}",
        ],
        test_other=["I can barely hear the music", "more volume"],
        zh_train=["把音量调大一点", "声音大一点", "音量调到八", "大声点", "调高音量",
                  "听不清，声音再大些"],
        zh_test=["音量加大", "把声音开大点"],
        extra_train=["turn it up 🔊", "louder, I love this Beyoncé track"],
        extra_test=["more volume please 📢"],
        emoji=["🔊", "📢"],
    ),
    "volume_down": dict(
        slots={"level": LOW_LEVELS, "step": STEPS},
        train_cmd=[
            "turn it down", "turn down the volume", "make it quieter",
            "decrease the volume", "lower the volume to {level}",
            "turn the music down", "reduce the volume by {step}",
            "turn the volume down to {level}", "lower the volume by {step}",
            "make the music quieter",
        ],
        train_other=[
            "volume down", "quieter", "too loud", "a bit softer",
            "less noise please",
            "the neighbors are complaining, turn it down",
            "it's way too loud", "softer please",
        ],
        test_cmd=[
            "bring the volume down", "tone it down a bit",
            "drop the volume to {level}", "lower the sound",
            "ease off the volume", "cut the volume by {step}",
        ],
        test_other=["less volume", "that's too loud for me"],
        zh_train=["把音量调小一点", "声音小一点", "太吵了，小声点", "调低音量",
                  "音量调到三", "声音关小些"],
        zh_test=["音量减小一点", "把声音调低"],
        extra_train=["turn it down 🔉",
                     "turn the volume down, the baby is sleeping 👶"],
        extra_test=["bring it down a notch 🙉"],
        emoji=["🔉", "🙉"],
    ),
    "set_alarm": dict(
        slots={"time": TIMES, "day": ALARM_DAYS},
        train_cmd=[
            "set an alarm for {time}", "wake me up at {time}",
            "set an alarm for {time} {day}", "wake me up {day} at {time}",
            "create an alarm for {time}", "set my alarm to {time}",
            "make an alarm for {time} {day}",
            "set a wake up alarm for {time}", "set an alarm",
        ],
        train_other=[
            "alarm at {time}", "I need to get up at {time} {day}",
            "alarm for {time} {day}", "wake up call at {time}",
        ],
        test_cmd=[
            "get me up at {time} {day}", "schedule an alarm at {time}",
            "put an alarm on for {time}", "buzz me at {time} {day}",
        ],
        test_other=["I have to be up by {time}", "new alarm {time} {day}"],
        zh_train=["明天早上七点叫醒我", "设置一个六点半的闹钟", "定个八点的闹钟",
                  "每个工作日早上六点响铃", "帮我设个明早五点四十五的闹钟",
                  "周六九点叫我起床"],
        zh_test=["定一个明天七点十五的闹钟", "早上六点叫我"],
        extra_train=["set an alarm for 7 am ⏰",
                     "wake me at 6 for my café shift"],
        extra_test=["schedule an alarm for 6:15 ⏰"],
        emoji=["⏰"],
    ),
    "add_to_shopping_list": dict(
        slots={"item": ITEMS},
        train_cmd=[
            "add {item} to the shopping list",
            "add {item} to my shopping list", "put {item} on the list",
            "put {item} on my grocery list",
            "add {item} and {item2} to the list",
            "remember to buy {item}", "add {item} to groceries",
            "put {item} and {item2} on the shopping list",
        ],
        train_other=[
            "we need {item}", "shopping list add {item}",
            "we're out of {item}", "I need to buy {item}",
            "don't let me forget {item}, put it on the list",
        ],
        test_cmd=[
            "stick {item} on the shopping list",
            "include {item} on my grocery list",
            "note down {item} for shopping",
            "jot down {item} for the store",
        ],
        test_other=[
            "we ran out of {item}, add it to the list",
            "grocery list: {item}",
        ],
        zh_train=["把牛奶加到购物清单", "购物清单里加上鸡蛋", "记得买面包",
                  "把洗洁精加入购物清单", "我们需要买苹果了", "购物清单添加两瓶酱油"],
        zh_test=["把大米加进购物清单", "购物清单加一包纸巾"],
        extra_train=["add crème fraîche and jalapeños to the shopping list",
                     "put avocados on the list 🥑"],
        extra_test=["include chili flakes on the grocery list 🌶️"],
        emoji=["🛒", "📝"],
    ),
    "thermostat": dict(
        slots={"temp": TEMPS, "room": ROOMS, "deg": DEGREES},
        train_cmd=[
            "set the thermostat to {temp}", "turn the heat up",
            "turn up the heating", "set the temperature to {temp}",
            "make it warmer in here", "make it cooler",
            "lower the temperature to {temp}",
            "turn on the air conditioning", "turn the heating down",
            "raise the temperature by {deg} degrees",
            "heat the {room} to {temp}", "set the {room} to {temp}",
            "switch the heating off", "turn the AC on",
            "turn the AC down to {temp}", "cool the {room} down",
        ],
        train_other=[
            "it's freezing in here", "it's too hot in the {room}",
            "what's the thermostat set to", "thermostat to {temp}",
        ],
        test_cmd=[
            "warm up the {room} to {temp}", "crank the AC",
            "bump the heat to {temp}", "cool the house down to {temp}",
            "drop the thermostat {deg} degrees",
        ],
        test_other=[
            "can we get it a bit warmer", "I'm shivering, more heat please",
        ],
        zh_train=["把空调调到二十六度", "温度调高一点", "把暖气开大",
                  "室内温度设为二十二度", "太冷了，把温度调高", "卧室温度调低两度"],
        zh_test=["把温度设成二十度", "太热了，空调温度调低点"],
        extra_train=["set the thermostat to 21 degrees 🌡️",
                     "it's freezing 🥶 turn the heat up"],
        extra_test=["cool it down to 20° please 🥵"],
        emoji=["🌡️", "🥶"],
    ),
    "what_time": dict(
        slots={"city": CITIES},
        train_cmd=[
            "tell me the time", "check the time", "give me the time",
            "tell me what time it is in {city}",
        ],
        train_other=[
            "what time is it", "what's the time",
            "do you know what time it is", "what time is it now",
            "current time", "time please", "what's the time right now",
            "got the time", "how late is it", "what time is it in {city}",
            "what's the time in {city}", "what time is it over in {city}",
            "what does your watch say",
        ],
        test_cmd=["read me the time", "say the time in {city}"],
        test_other=[
            "what hour is it", "any idea what time it is", "clock check",
            "what's the current time in {city}", "how late is it getting",
            "what does the clock say",
        ],
        zh_train=["现在几点了", "几点了", "告诉我现在的时间", "现在是什么时间",
                  "伦敦现在几点", "请问几点钟了"],
        zh_test=["现在时间是多少", "看一下现在几点"],
        extra_train=["what time is it ⌚", "what time is it in Reykjavík"],
        extra_test=["what's the time in Bogotá 🕒"],
        emoji=["⌚", "🕒"],
    ),
    "tell_joke": dict(
        slots={"topic": TOPICS, "topicadj": TOPIC_ADJ},
        train_cmd=[
            "tell me a joke", "tell me a joke about {topic}", "make me laugh",
            "say something funny", "tell me a funny one",
            "give me a dad joke", "tell me a knock knock joke",
            "cheer me up with a joke", "entertain me with a joke",
            "tell me another joke", "hit me with a joke about {topic}",
            "tell me a {topicadj} joke", "crack a joke about {topic}",
        ],
        train_other=[
            "know any good jokes", "I need a laugh",
            "got any jokes about {topic}", "do you know any {topicadj} jokes",
            "joke time",
        ],
        test_cmd=[
            "crack a joke", "share a pun about {topic}",
            "say something to make me giggle", "tell us something hilarious",
            "amuse me",
        ],
        test_other=["what's your best joke", "I could use a good pun about {topic}"],
        zh_train=["讲个笑话", "给我讲个笑话吧", "说个好笑的", "来个冷笑话", "逗我笑一下",
                  "讲一个关于猫的笑话"],
        zh_test=["有没有什么好玩的笑话", "给我讲个段子"],
        extra_train=["tell me a joke 😂", "tell me a joke about café waiters"],
        extra_test=["crack me up 🤣"],
        emoji=["😂", "🤣"],
    ),
}
# play_music's "{genre} in the {room}" needs rooms too.
INTENTS["play_music"]["slots"]["room"] = ROOMS

OOS_TRAIN = [
    "what is the capital of peru", "file my taxes",
    "order me a large pepperoni pizza", "call an uber to the airport",
    "who won the world cup in 1998", "transfer 200 dollars to my sister",
    "how do I fix a flat bike tire", "write me a cover letter",
    "translate this email into japanese",
    "book a table for two at an italian restaurant", "what's my credit score",
    "renew my passport", "how many calories are in an avocado",
    "schedule a dentist appointment",
    "send a text to mom saying I'm running late",
    "what's the stock price of apple", "recommend a good mystery novel",
    "who was the first president of kenya", "find me a plumber nearby",
    "what's the meaning of life", "buy some bitcoin",
    "how do you say thank you in korean", "check my bank balance",
    "pay my electricity bill", "hire a babysitter for friday night",
    "what's the population of canada", "cancel my gym membership",
    "how do I bake sourdough bread", "apply for a mortgage",
    "teach me to play guitar", "solve this differential equation",
    "what year did the berlin wall fall", "who wrote pride and prejudice",
    "reset my email password", "book a hotel in barcelona for next weekend",
    "find cheap car insurance", "what's the exchange rate from euro to yen",
    "walk the dog for me", "do my homework",
    "what's the best way to learn french", "summarize this pdf",
    "how tall is mount everest", "is my flight delayed",
    "order flowers for my wife's birthday", "rent a car in denver",
    "what's the plot of hamlet", "fold my laundry",
    "recommend a restaurant downtown", "track my package",
    "sign me up for a marathon",
    "what's the difference between a virus and a bacterium",
    "wash the dishes", "get me tickets to the lakers game",
    "how many ounces are in a cup", "write my wedding speech",
]
OOS_TEST = [
    "book me a train to munich", "what's the tallest building in the world",
    "do my tax return", "order sushi for delivery",
    "how do I change a car battery", "what's the capital of mongolia",
    "pay my phone bill", "how many bones are in the human body",
    "book a flight to new york for tuesday", "find me a dermatologist",
    "what's the gdp of brazil", "iron my shirts",
    "get me a refund for this order", "who painted the mona lisa",
    "sell my old couch online", "how long should I boil an egg",
    "renew my driver's license", "write a poem about the sea",
]
OOS = dict(
    zh_train=["帮我订一张去罗马的机票", "秘鲁的首都是哪里", "帮我报税",
              "给我叫一辆出租车", "帮我翻译这份合同", "股票明天会涨吗"],
    zh_test=["帮我预订一家餐厅", "地球到月球有多远"],
    extra_train=["book me a flight to rome ✈️",
                 "order a piña colada from the bar"],
    extra_test=["translate déjà vu into german"],
    emoji=["🤷", "🙏"],
)

LABELS = list(INTENTS) + ["oos"]

# ---------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------
CMD_PREFIXES = ["please ", "can you ", "could you ", "would you ",
                "can you please ", "hey assistant, ", "ok, ", "hey, ",
                "could you please ", "go ahead and "]
OTHER_PREFIXES = ["hey assistant, ", "hey, ", "ok so ", "um ", "hi, "]
CMD_SUFFIXES = [" please", ", thanks", ", thank you", " now", " right now",
                " for me", " pls"]
OTHER_SUFFIXES = [" please", ", thanks"]
QUESTION_STARTS = ("what", "what's", "will", "is", "how", "how's", "who",
                   "where", "when", "why", "which", "does", "any", "should",
                   "can", "could", "would", "got", "know", "are")
KEYBOARD_NEIGHBOURS = {
    "a": "sq", "e": "wr", "i": "uo", "o": "ip", "u": "yi", "t": "ry",
    "n": "bm", "s": "ad", "r": "et", "l": "k", "h": "gj", "m": "n",
    "c": "xv", "d": "sf", "p": "o", "g": "fh",
}


def typo(rng, text):
    """Introduce one realistic typo in a random ASCII word of length >= 4."""
    words = text.split(" ")
    idx = [i for i, w in enumerate(words)
           if len(w) >= 4 and all(c in string.ascii_letters for c in w)]
    if not idx:
        return text
    i = rng.choice(idx)
    w = words[i]
    kind = rng.randrange(4)
    p = rng.randrange(1, len(w) - 1)
    if kind == 0:    # swap two adjacent letters
        w = w[:p] + w[p + 1] + w[p] + w[p + 2:]
    elif kind == 1:  # drop a letter
        w = w[:p] + w[p + 1:]
    elif kind == 2:  # double a letter
        w = w[:p] + w[p] + w[p:]
    else:            # hit a neighbouring key
        c = w[p].lower()
        if c in KEYBOARD_NEIGHBOURS:
            w = w[:p] + rng.choice(KEYBOARD_NEIGHBOURS[c]) + w[p + 1:]
        else:
            w = w[:p] + w[p + 1:]
    words[i] = w
    return " ".join(words)


QUESTION_PREFIXES = ("can you ", "could you ", "would you ", "can you please ",
                     "could you please ")


def title(text):
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def noisy(rng, text, is_cmd, emoji):
    """Apply politeness, casing/punctuation style, typos and emoji."""
    words = text.lower().split(" ")
    first = words[0].rstrip(",")
    question = first in QUESTION_STARTS or (
        first == "do" and len(words) > 1 and words[1] in ("i", "you", "we"))
    prefix = ""
    if rng.random() < (0.30 if is_cmd else 0.12):
        prefix = rng.choice(CMD_PREFIXES if is_cmd else OTHER_PREFIXES)
        question = question or prefix in QUESTION_PREFIXES
    if rng.random() < (0.18 if is_cmd else 0.08):
        suffixes = CMD_SUFFIXES if is_cmd else OTHER_SUFFIXES
        low = (prefix + text).lower()
        suffixes = [x for x in suffixes
                    if not ("please" in low and x.strip() in ("please", "pls"))
                    and not (" me" in " " + low and x == " for me")
                    and not (question and "than" in x)
                    and not low.endswith(("please", "thanks"))]
        if suffixes:
            text = text + rng.choice(suffixes)
    text = prefix + text
    if rng.random() < 0.08:
        text = typo(rng, text)

    style = rng.random()
    if style < 0.30:
        # ASR-like: lowercase, no punctuation at all
        text = text.lower()
        text = re.sub(r"[,.!?:;]", "", text)
        if rng.random() < 0.5:
            text = text.replace("'", "")
    elif style < 0.62:
        # typed quickly: lowercase start, no final punctuation
        text = text[0].lower() + text[1:]
    elif style < 0.95:
        # proper sentence
        text = text[0].upper() + text[1:]
        if question:
            text += "?"
        else:
            text += rng.choice([".", ".", "!", ""])
    else:
        text = text.upper() if rng.random() < 0.5 else title(text)
    if rng.random() < 0.035:
        text = text + " " + rng.choice(emoji)
    return re.sub(r"\s+", " ", text).strip()


def norm(text):
    """Key used to forbid near-duplicates across splits."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(c for c in text if c.isalnum() or c.isspace())
    return " ".join(text.split())


SLOT_RE = re.compile(r"\{(\w+?)\d*\}")


def fill(rng, template, slots, pool_index):
    """Fill a template. pool_index: 0=train values, 1=test values,
    None=either (test-time held-out templates). Repeated slot kinds
    ({item}, {item2}) get distinct values."""
    used = collections.defaultdict(set)

    def repl(m):
        kind = m.group(1)
        train_vals, test_vals = slots[kind]
        if pool_index == 0:
            vals = train_vals
        elif pool_index == 1:
            vals = test_vals
        else:
            vals = test_vals if rng.random() < 0.5 else train_vals
        choices = [v for v in vals if v not in used[kind]]
        v = rng.choice(choices)
        used[kind].add(v)
        return v

    return re.sub(r"\{(\w+?)\d*\}", repl, template)


def gen_intent(rng, label, spec, n_train, n_test):
    train, test = [], []
    seen_train, seen_test = set(), set()
    reserved_test = set()

    def add(rows, seen, text):
        k = norm(text)
        if not k or k in seen:
            return False
        seen.add(k)
        rows.append(text)
        return True

    # Hand-written rows first. Reserve test hand-written rows so train avoids them.
    for t in spec["zh_test"] + spec["extra_test"]:
        reserved_test.add(norm(t))
    for t in spec["zh_train"] + spec["extra_train"]:
        assert norm(t) not in reserved_test, t
        assert add(train, seen_train, t), t

    if label == "oos":
        pool = OOS_TRAIN[:]
        rng.shuffle(pool)
        for t in pool:
            if len(train) >= n_train:
                break
            add(train, seen_train, noisy(rng, t, False, spec["emoji"]))
        for t in spec["zh_test"] + spec["extra_test"]:
            assert norm(t) not in seen_train, t
            assert add(test, seen_test, t), t
        pool = OOS_TEST[:]
        rng.shuffle(pool)
        for t in pool:
            if len(test) >= n_test:
                break
            cand = noisy(rng, t, False, spec["emoji"])
            if norm(cand) not in seen_train:
                add(test, seen_test, cand)
        assert len(train) == n_train and len(test) == n_test, (label, len(train), len(test))
        return train, test

    slots = spec["slots"]
    train_t = [(t, True) for t in spec["train_cmd"]] + \
              [(t, False) for t in spec["train_other"]]
    test_t = [(t, True) for t in spec["test_cmd"]] + \
             [(t, False) for t in spec["test_other"]]
    slotted_train_t = [x for x in train_t if SLOT_RE.search(x[0])]

    # Train: cycle through templates so every one is used, then sample.
    attempts = 0
    order = train_t[:]
    rng.shuffle(order)
    while len(train) < n_train:
        attempts += 1
        assert attempts < 20000, f"{label}: could not fill train"
        tpl, is_cmd = order[attempts % len(order)] if attempts <= len(order) \
            else rng.choice(train_t)
        cand = noisy(rng, fill(rng, tpl, slots, 0), is_cmd, spec["emoji"])
        if norm(cand) in reserved_test:
            continue
        add(train, seen_train, cand)

    # Test: hand-written rows, then ~55% held-out templates, ~45% train
    # templates with held-out slot values only.
    for t in spec["zh_test"] + spec["extra_test"]:
        assert norm(t) not in seen_train, t
        assert add(test, seen_test, t), t
    attempts = 0
    while len(test) < n_test:
        attempts += 1
        assert attempts < 20000, f"{label}: could not fill test"
        if rng.random() < 0.55 or not slotted_train_t:
            tpl, is_cmd = rng.choice(test_t)
            text = fill(rng, tpl, slots, None)
        else:
            tpl, is_cmd = rng.choice(slotted_train_t)
            text = fill(rng, tpl, slots, 1)
        cand = noisy(rng, text, is_cmd, spec["emoji"])
        if norm(cand) in seen_train:
            continue
        add(test, seen_test, cand)
    return train, test


def main():
    rng = random.Random(SEED)
    train_rows, test_rows = [], []
    for label in LABELS:
        if label == "oos":
            spec, n_train, n_test = OOS, 60, 20
        else:
            spec = INTENTS[label]
            n_train, n_test = rng.randint(56, 64), rng.randint(14, 16)
        tr, te = gen_intent(rng, label, spec, n_train, n_test)
        train_rows += [(t, label) for t in tr]
        test_rows += [(t, label) for t in te]
    rng.shuffle(train_rows)
    rng.shuffle(test_rows)

    for name, rows in (("train.csv", train_rows), ("test.csv", test_rows)):
        with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            w.writerow(["text", "label"])
            w.writerows(rows)

    write_readme(train_rows, test_rows)


README = """\
# Demo data: home-assistant voice commands

A small, original intent-classification data set for trying out the classifier
end to end (training on the host, inference on a Raspberry Pi-class board).
Each row is one thing a user might say to an offline home assistant, labelled
with the intent it expresses.

**This file is generated by `generate.py`; edit that script, not this file.**

## Files

| file | contents |
|---|---|
| `train.csv` | training split |
| `test.csv` | held-out evaluation split |
| `generate.py` | the script that wrote both CSVs and this README |

Both CSVs are UTF-8 (no BOM) with LF line endings, header `text,label`, and use
RFC 4180 quoting (a field is wrapped in double quotes when it contains a comma
or a quote; inner quotes are doubled). Rows are shuffled.

## Labels

14 in-scope intents plus one out-of-scope class (15 classes):

| label | meaning | example |
|---|---|---|
| `lights_on` | switch lights on (optionally in a room) | turn on the kitchen lights |
| `lights_off` | switch lights off | lights off in the hallway |
| `set_timer` | start a countdown timer for a duration | set a 10 minute timer for the pasta |
| `cancel_timer` | stop / delete a running timer | cancel the egg timer |
| `weather` | weather or forecast for a place / day | will it rain in Oslo tomorrow |
| `play_music` | play an artist, song, genre or playlist | play some Beyoncé |
| `pause_music` | pause / stop playback | pause the music |
| `volume_up` | make the speaker louder | turn it up |
| `volume_down` | make the speaker quieter | turn the volume down to 3 |
| `set_alarm` | set an alarm for a clock time | wake me up at 6:30 tomorrow |
| `add_to_shopping_list` | add items to the shopping list | put oat milk on the list |
| `thermostat` | heating / cooling / target temperature | set the thermostat to 21 degrees |
| `what_time` | ask for the current time (optionally in a city) | what time is it in Tokyo |
| `tell_joke` | ask for a joke | tell me a joke about cats |
| `oos` | out of scope: things this assistant cannot do | book me a flight to rome |

## Counts

Computed from the written files:

@COUNTS@

## What the text looks like

* English phrasings vary in politeness ("can you ...", "... please"), casing and
  punctuation; roughly 30% are lowercase ASR-style transcripts with no
  punctuation, about 8% contain a typo, and a few are ALL CAPS or Title Case.
* Slot values vary: rooms, durations (digits and words), cities, artists, songs,
  genres, clock times, temperatures, shopping items.
* About 10% of every label is simplified Chinese (e.g. 打开客厅的灯, 把音量调大一点,
  明天北京天气怎么样).
* A few rows carry emoji (turn on the lights 💡) or accented Latin letters
  (play some Beyoncé, café lights on, weather in Zürich).
* `oos` contains general-knowledge questions, errands, bookings, payments and
  chores the assistant cannot perform, including a few deliberately close
  negatives (e.g. cancel my gym membership, how long should I boil an egg).

## How it was generated

`python3 models/demo/generate.py` (Python 3 standard library only, fixed seed,
so the output is byte-for-byte reproducible).

* Each intent has hand-written **train templates** and separate hand-written
  **test templates**, and every slot has a train pool of values and a
  **held-out** test pool (e.g. test-only cities, artists, rooms, items).
* A test row is either a held-out template (with any slot values) or a train
  template filled only with held-out values, so the test set is not just a
  re-shuffle of training sentences.
* The noise described above (prefixes/suffixes, casing, punctuation, typos,
  emoji) is applied on top.
* Chinese rows, emoji/accented extra rows and all `oos` rows are hand-written
  sentences, each assigned to exactly one split.
* No text occurs in both splits, not even after lowercasing and removing
  punctuation and emoji; there are no duplicates within a split either.

Difficulty check: a throw-away multinomial naive-Bayes classifier on character
2-4-grams, trained on `train.csv`, scores about 89% on `test.csv`. Its errors are
mostly the held-out phrasings ("crank the AC", "clock check", "cut the volume")
and short Chinese rows, so a real model should land in the 90-98% range.

## Licence

CC0 1.0 Universal (public domain dedication). All sentences, templates and
slot lists were written for this project; nothing is copied from an existing
data set.
"""


def is_zh(text):
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def write_readme(train_rows, test_rows):
    ctr = collections.Counter(l for _, l in train_rows)
    cte = collections.Counter(l for _, l in test_rows)
    zhr = collections.Counter(l for t, l in train_rows if is_zh(t))
    zhe = collections.Counter(l for t, l in test_rows if is_zh(t))
    lines = ["| label | train | test | of which Chinese (train / test) |",
             "|---|---:|---:|---:|"]
    for l in LABELS:
        lines.append(f"| `{l}` | {ctr[l]} | {cte[l]} | {zhr[l]} / {zhe[l]} |")
    lines.append(f"| **total** | **{len(train_rows)}** | **{len(test_rows)}** | "
                 f"{sum(zhr.values())} / {sum(zhe.values())} |")
    table = "\n".join(lines)
    with open(os.path.join(HERE, "README.md"), "w", encoding="utf-8") as f:
        f.write(README.replace("@COUNTS@", table))


if __name__ == "__main__":
    main()
